"""The public parameters of coded training: the options, the parties and the simulated dropouts.

:class:`CodedConfig` is the one place the options and their defaults live (the estimators, the
party app and the tests all build it). Besides the options it holds the topology (``server``,
``clients``), the field (``primes``) and, for tests, an explicit ``silent`` schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mpcml.lagrange import DEFAULT_PRIME, LagrangeCode, check_prime

from ..common import check_number, check_party_ids
from ..config import ProtocolConfig, integer, number, one_of, option, optional

MODELS = ("logistic", "linear")
DEGREE = 2
"""The gradient ``sum_rows x (x . w + v)`` is a polynomial of degree 2 in the data."""
SIGMOID_FIT_RANGE = 4.0
_GRID = np.linspace(-SIGMOID_FIT_RANGE, SIGMOID_FIT_RANGE, 4001)
SIGMOID_SLOPE = float(np.polyfit(_GRID, 1.0 / (1.0 + np.exp(-_GRID)), 1)[0])
"""``c`` of the least-squares line ``1/2 + c z`` through the logistic function on ``[-4, 4]`` (0.1532)."""
DEFAULT_PRIMES = (DEFAULT_PRIME, 2**31 - 19)


def _learning_rate(name: str, value: object) -> float:
    rate = check_number(name, value)
    if rate >= 2:
        raise ValueError(f"{name} is a multiple of 1/L (L the curvature bound agreed at set-up) and must be below 2, "
                         f"where gradient descent stops converging; got {rate:g} (1.0 is the classical safe step)")
    return rate


@dataclass(frozen=True)
class CodedConfig(ProtocolConfig):
    """Everything the server and the clients of one run agree on: the options, then who plays which role."""

    model: str = option("logistic", "`logistic` (the sigmoid replaced by its least-squares line on [-4, 4]) or "
                        "`linear` (squared loss)", one_of(*MODELS))
    n_blocks: int = option(1, "K: blocks each client's rows are cut into; a client computes on 1/K of the coded "
                           "data, and R = 2 (K + T - 1) + 1 results are needed per round", integer(1, 10_000))
    n_masks: int | None = option(None, "T: random masks per coded share; any T colluding clients learn nothing about "
                                 "another client's data (none: max(2, ceil(N / 4)))", optional(integer(1, 10_000)))
    n_rounds: int = option(100, "rounds of full-batch gradient descent", integer(1, 1_000_000))
    learning_rate: float = option(1.0, "step size as a multiple of 1/L, L the public bound on the loss's curvature "
                                  "agreed at set-up (below 2)", _learning_rate)
    alpha: float = option(0.0, "L2 penalty (the intercept is not penalised)", number(positive=False))
    n_dropouts: int = option(0, "simulated dropouts: clients told to stay silent in each round (at most N - R)",
                             integer(0))
    round_timeout: float = option(10.0, "seconds a round waits for R results before it fails", number())
    random_state: int | None = option(None, "seed of the simulated dropout schedule (which clients stay silent; not "
                                      "a secret)", optional(integer(0, 2**32 - 1)))
    server: str = "server"
    clients: tuple[str, ...] = ()
    primes: tuple[int, ...] = DEFAULT_PRIMES
    silent: tuple[tuple[str, ...], ...] = ()
    """An explicit schedule (tests): ``silent[r]`` are the clients told to stay silent in round ``r``."""

    def validate(self) -> None:
        if not isinstance(self.clients, tuple) or not isinstance(self.primes, tuple) or not isinstance(self.silent, tuple):
            raise TypeError("clients, primes and silent must be tuples")
        check_party_ids((self.server, *check_party_ids(self.clients, "clients")), "server and clients")
        primes = [check_prime(p) for p in self.primes]
        if not primes or len(set(primes)) != len(primes) or math.prod(primes) >= 2**63:
            raise ValueError(f"primes must be one or two distinct primes below 2^31 (product below 2^63), got {primes}")
        n, r = len(self.clients), self.recovery_threshold
        if r > n:
            default = " (the default T = max(2, ceil(N / 4)); T = 1 protects against single clients only)" \
                if self.n_masks is None else ""
            raise ValueError(
                f"R = 2 (K + T - 1) + 1 = 2 ({self.n_blocks} + {self.masks} - 1) + 1 = {r} results are needed per "
                f"round but there are only N = {n} clients: lower n_blocks (K) or n_masks (T){default}, or add clients")
        self.check_tolerates(self.n_dropouts, "n_dropouts =")
        if len(self.silent) > self.n_rounds:
            raise ValueError(f"silent lists {len(self.silent)} rounds but n_rounds = {self.n_rounds}")
        for index, group in enumerate(self.silent):
            unknown = set(group) - set(self.clients)
            if not isinstance(group, tuple) or unknown:
                raise ValueError(f"silent[{index}] must be a tuple of client ids, got {group!r}")
            self.check_tolerates(len(set(group)), f"silent[{index}] has")

    @property
    def masks(self) -> int:
        """``T``: ``n_masks``, or ``max(2, ceil(N / 4))`` by default."""
        return self.n_masks if self.n_masks is not None else max(2, -(-len(self.clients) // 4))

    @property
    def recovery_threshold(self) -> int:
        """``R = 2 (K + T - 1) + 1``: the results the server decodes each round from."""
        return DEGREE * (self.n_blocks + self.masks - 1) + 1

    def check_tolerates(self, n_dropouts: int, what: str) -> None:
        """``ValueError`` with the arithmetic if ``n_dropouts`` silent clients leave fewer than ``R``."""
        n, r = len(self.clients), self.recovery_threshold
        if n_dropouts > n - r:
            raise ValueError(
                f"{what} {n_dropouts} dropouts but N - R = {n} - (2 (K + T - 1) + 1) = {n} - (2 ({self.n_blocks} + "
                f"{self.masks} - 1) + 1) = {n - r} can be tolerated; lower n_blocks (K) or n_masks (T), or add clients")

    @cached_property
    def codes(self) -> tuple[LagrangeCode, ...]:
        """One Lagrange code per prime (the same evaluation points)."""
        return tuple(LagrangeCode(len(self.clients), self.n_blocks, self.masks, DEGREE, p) for p in self.primes)

    @property
    def modulus(self) -> int:
        """The product of the primes: decoded gradients are exact residues modulo it (Chinese remainders)."""
        return math.prod(self.primes)

    @property
    def slope(self) -> float:
        """``c``: the gradient is ``c X^T (X w + v) / m`` (the sigmoid's slope for logistic, 1 for linear)."""
        return SIGMOID_SLOPE if self.model == "logistic" else 1.0

    @cached_property
    def schedule(self) -> tuple[frozenset[str], ...]:
        """The clients told to stay silent in each round: ``silent``, or ``n_dropouts`` drawn per round.

        A simulation choice made by the server alone, not a secret (numpy's generator, seeded by
        ``random_state``).
        """
        if self.silent or not self.n_dropouts:
            return tuple(frozenset(s) for s in self.silent) + (frozenset(),) * (self.n_rounds - len(self.silent))
        picker = np.random.default_rng(self.random_state)
        return tuple(frozenset(str(c) for c in picker.choice(list(self.clients), self.n_dropouts, replace=False))
                     for _ in range(self.n_rounds))
