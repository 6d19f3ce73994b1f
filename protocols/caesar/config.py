"""CAESAR's public parameters, the public set-up facts and the range analysis.

:class:`CaesarConfig` is the one place the options and their defaults live (the estimator, the
party app and the tests all build it). :func:`plan` is the range analysis: from the facts the two
parties announce at set-up (:func:`block_facts`) it bounds every weight over all epochs, and from
that every product, residual and packed slot, before the first data-dependent message; it refuses
a run whose bounds do not fit with a ``ValueError`` naming the party, the bound, the offending
parameter and a value that works.

Why a bound exists at all: mini-batch descent with the linear sigmoid is the map
``w <- (I - eta/4 X_S^T X_S) w - eta X_S^T (1/2 - y_S)`` (``eta = lr / |S|``). While
``lr ||X_S||^2 / (4 |S|) <= 2`` the first part does not expand, so ``||w||`` grows by at most
``lr sqrt(lambda) / 2`` per step, ``lambda >= ||X_S||^2 / |S|`` for every batch: the weights stay
within ``T lr sqrt(lambda) / 2`` after ``T`` steps, whatever the labels. A larger step expands by
up to ``kappa = lr lambda / 4 - 1`` per step, and the bound grows like ``kappa^T``. The cubic
sigmoid has slope ``q1 + 3 q3 z^2`` (negative beyond ``|z| = 5.6``), so its bound also needs
``|z|`` bounded: the analysis searches for a ``Z`` with ``|z| <= Z`` along the whole run.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, eigsh

from mpcml.he import MASK_SIGMA, plaintext_bits

from ..common import check_party_ids
from ..config import ProtocolConfig, boolean, he_key_bits, he_option, integer, number, one_of, option, optional
from ..regression.config import batch_schedule

SIGMOIDS = ("linear", "cubic")
OUTPUTS = ("own", "reveal", "shared")
STEP_PRECISION_BITS = 24
"""``eta = lr / |S|`` keeps at least this many significant bits."""
STEP_TRUNCATION_BITS = 20
"""Each party floors its share of ``eta e`` by this many bits before it enters the weights."""
DECAY_BITS = 30
"""Fractional bits of the public L2 decay factor."""
CUBIC = (0.5, 0.15012, -0.001593)
"""Least-squares fit of the logistic function by ``q0 + q1 z + q3 z^3`` on [-8, 8] (numpy lstsq)."""
COEF_BITS = 24
"""Fractional bits of the cubic's coefficients."""
QUARTERS = 4
"""Public bounds are announced as ``2^(q / 4)`` (a quarter of a bit: at most 19% above the value)."""
LOWEST = -256
"""The quarter-bit exponent announced for an all-zero block (``2^-64``)."""
MAX_WEIGHT_BITS = 40
"""The analysis refuses runs whose weights it cannot keep below ``2^40``."""
_SEARCH_BITS = 80


@dataclass(frozen=True)
class CaesarConfig(ProtocolConfig):
    """Everything the two parties of one CAESAR run agree on: the options, then who is A and who is B."""

    learning_rate: float = option(0.1, "step size lr of mini-batch gradient descent (eta = lr / batch rows)",
                                  number(high=1024))
    epochs: int = option(10, "passes over the data", integer(1, 100_000))
    batch_size: int = option(64, "rows per mini-batch (the last batch of an epoch may be smaller)", integer(1))
    l2: float = option(0.0, "L2 penalty, applied once per epoch as w <- (1 - lr l2)^batches w (intercept excluded)",
                       number(positive=False))
    sigmoid: str = option("linear", "`linear` (1/2 + z/4, local) or `cubic` (one more round per batch)",
                          one_of(*SIGMOIDS))
    fit_intercept: bool = option(True, "learn an intercept (a column of ones at the label party B)", boolean)
    output: str = option("own", "`own` (A learns w_A, B learns w_B and the intercept), `reveal` (both learn "
                         "every weight) or `shared` (the weights stay additively shared)", one_of(*OUTPUTS))
    he: str = he_option("each party's key pair")
    key_bits: int = option(2048, "modulus size of each party's `he` key pair", he_key_bits)
    frac_bits: int = option(16, "fractional bits of the residuals (and of non-integer features)", integer(8, 32))
    report_loss: bool = option(False, "B learns each epoch's mean squared residual (one number per epoch)", boolean)
    random_state: int | None = option(None, "seed of the public batch order (none: B draws a fresh one)",
                                      optional(integer(-(2**63), 2**63 - 1)))
    features: str = "a"
    labels: str = "b"

    def validate(self) -> None:
        check_party_ids((self.features, self.labels), "the parties (features, labels)")
        if self.l2 * self.learning_rate >= 1:
            raise ValueError(f"l2 must satisfy l2 * learning_rate < 1, got l2={self.l2!r} "
                             f"with learning_rate={self.learning_rate!r}")

    @property
    def seed(self) -> bytes | None:
        """The 32-byte batch-order seed from ``random_state`` (``None``: B draws a fresh one)."""
        if self.random_state is None:
            return None
        return hashlib.sha256(b"mpcml.caesar.batches" + int(self.random_state).to_bytes(16, "big", signed=True)).digest()

    @property
    def step_bits(self) -> int:
        """Fractional bits ``fs`` of ``eta = lr / |S|``: at least 24 significant bits for a full batch."""
        return STEP_PRECISION_BITS + max(0, math.ceil(math.log2(self.batch_size / self.learning_rate)))

    @property
    def weight_frac_bits(self) -> int:
        """``fw = fs + f - 20``: the weights' fractional bits (plus the features' own scale)."""
        return self.step_bits + self.frac_bits - STEP_TRUNCATION_BITS

    def other(self, party: str) -> str:
        return self.labels if party == self.features else self.features


def batches(config: CaesarConfig, seed: bytes, n_rows: int) -> list[list[np.ndarray]]:
    """Every epoch's mini-batches (row indices) from the public seed: a fresh permutation per epoch."""
    out: list[list[np.ndarray]] = [[] for _ in range(config.epochs)]
    for epoch, rows in batch_schedule(seed, n_rows, config.epochs, config.batch_size):
        out[epoch].append(rows)
    return out


def quarter_bits(value: float) -> int:
    """``q`` with ``value <= 2^(q / 4)`` (the rounding of every announced bound); ``LOWEST`` for 0."""
    if value <= 0:
        return LOWEST
    return max(LOWEST, math.ceil(QUARTERS * math.log2(value) - 1e-12))


def from_quarters(q: int) -> float:
    return 2.0 ** (q / QUARTERS)


def spectral_norm_squared(block: sp.csr_matrix) -> float:
    """``||block||_2^2``: the largest eigenvalue of the smaller Gram matrix (dense up to 64, else Lanczos on
    ``v -> B (B^T v)`` or ``B^T (B v)``, two sparse products per iteration)."""
    if block.nnz == 0:
        return 0.0
    rows, cols = block.shape
    if min(rows, cols) <= 64:
        gram = (block @ block.T) if rows <= cols else (block.T @ block)
        return float(np.linalg.eigvalsh(gram.toarray())[-1]) * (1 + 1e-9)
    side, product = (rows, lambda v: block @ (block.T @ v)) if rows <= cols else (cols, lambda v: block.T @ (block @ v))
    gram = LinearOperator((side, side), matvec=product, dtype=np.float64)
    return float(eigsh(gram, k=1, which="LA", return_eigenvectors=False, tol=1e-9)[0]) * (1 + 1e-6)


def block_facts(x: sp.csr_matrix, fx: int, schedule: Sequence[Sequence[np.ndarray]], outputs: int) -> dict[str, int]:
    """The public facts one party announces at set-up (what they reveal: see :mod:`protocols.caesar`).

    ``x``: the party's encoded block (integers at scale ``2^fx``, B's with its intercept column);
    ``row_norm``: quarter bits of ``max_i ||x_i||_2``; ``spread``: quarter bits of
    ``max_S ||X_S||_2^2 / |S|`` over the agreed batches; ``outputs``: B's number of models ``K``.
    """
    real = sp.csr_matrix(x, dtype=np.float64) * 2.0**-fx
    squares = np.asarray(real.multiply(real).sum(axis=1)).ravel()
    spread = max((spectral_norm_squared(real[rows]) / len(rows) for epoch in schedule for rows in epoch), default=0.0)
    return {"rows": int(x.shape[0]), "cols": int(x.shape[1]), "x_frac_bits": int(fx),
            "row_norm": quarter_bits(math.sqrt(float(squares.max()))), "spread": quarter_bits(spread),
            "outputs": int(outputs)}


def column_hint(x: Any) -> str:
    """Which of a party's own columns has the largest values (only the party itself can say)."""
    mat = sp.csr_matrix(x, dtype=np.float64)
    top = np.asarray(abs(mat).max(axis=0).todense()).ravel()
    j = int(np.argmax(top))
    return f"its column {j} has |x| up to {top[j]:.3g}"


@dataclass(frozen=True)
class Scales:
    """The outcome of the range analysis (public, the same at both parties); bits are of real values.

    ``weight_bound``: ``||w_k||_2`` of every model ``k`` over the whole run. ``z_bound``: ``|z|``
    of every row. ``product_bits[P]``: ``|X_P w_P| < 2^bits``. ``weight_bits``: ``|w| < 2^bits``.
    ``cubic_bits``: the cubic's ``|q0 + q1 z + q3 z^3| < 2^bits``. ``share_bits``: a party's
    integer share of a residual (masks included) at scale ``2^f``. ``growth``: the largest factor
    one step can expand the weights by (1 when the step size is stable); ``stable_rate``: the
    largest learning rate with ``growth == 1``.
    """

    steps: int
    spread: float
    growth: float
    stable_rate: float
    weight_bound: float
    z_bound: float
    product_bits: dict[str, int]
    weight_bits: int
    cubic_bits: int
    share_bits: int

    def divergence(self, config: CaesarConfig) -> str:
        """Why gradient descent may diverge (``growth > 1``), for a warning; empty when the step is stable."""
        if self.growth <= 1:
            return ""
        if self.stable_rate == 0:
            return (f"sigmoid='cubic': the run may reach |z| up to {self.z_bound:.3g}, where the cubic's slope is "
                    "negative (beyond |z| = 5.6): gradient descent may diverge")
        return (f"learning_rate={config.learning_rate:g} exceeds the stable step {self.stable_rate:.3g} for these "
                "features: gradient descent may diverge")


def _bits(value: float) -> int:
    """Bits of a magnitude ``value`` plus one of headroom (at least 1)."""
    return max(1, math.ceil(math.log2(value)) + 1) if value > 0 else 1


def _slopes(config: CaesarConfig, z: float) -> tuple[float, float]:
    """``(smallest, largest)`` slope of the sigmoid approximation on ``|z| <= z``."""
    if config.sigmoid == "linear":
        return 0.25, 0.25
    q1, q3 = round(CUBIC[1] * 2**COEF_BITS) / 2**COEF_BITS, round(CUBIC[2] * 2**COEF_BITS) / 2**COEF_BITS
    return q1 + 3 * q3 * z * z, q1


def step_growth(config: CaesarConfig, spread: float, z: float) -> tuple[float, float]:
    """``(kappa, residual error)`` of one step: the expansion factor and the fixed-point error of ``e``.

    ``kappa`` bounds ``||I - eta X_S^T D X_S||`` with ``D`` the sigmoid's slopes on ``|z| <= z``;
    the error of each residual is at most 4 units ``2^-f`` (floored shares of ``z``), through the
    cubic's slope and 2 more floors for the cubic.
    """
    low, high = _slopes(config, z)
    lr = config.learning_rate
    kappa = max(1.0, lr * high * spread - 1.0, 1.0 + lr * max(0.0, -low) * spread)
    unit = 2.0**-config.frac_bits
    error = 4 * unit if config.sigmoid == "linear" else (4 * max(high, abs(low)) + 2) * unit
    return kappa, error


def _weight_bound(config: CaesarConfig, spread: float, steps: int, cols: int, fx_min: int, z: float) -> tuple[float, float]:
    """``(bound on ||w_k||_2 after every step, kappa)``: ``W_{t+1} = kappa W_t + c`` from ``W_0 = 0``.

    ``c = lr sqrt(lambda) (1/2 + error)`` (the labels' pull and the residuals' fixed-point error),
    plus the floors of the shares of ``eta e`` (2 units ``2^-fw`` per row) and of the L2 decay (2
    units ``2^-F`` per weight, counted every step).
    """
    kappa, error = step_growth(config, spread, z)
    root = math.sqrt(spread)
    fw = config.weight_frac_bits
    c = (config.learning_rate * root * (0.5 + error) + config.batch_size * root * 2.0 ** (1 - fw)
         + math.sqrt(cols) * 2.0 ** (1 - fw - fx_min))
    if kappa == 1.0:
        return c * steps, kappa
    if steps * math.log2(kappa) > 4 * MAX_WEIGHT_BITS:
        return math.inf, kappa
    return c * (kappa**steps - 1) / (kappa - 1), kappa


def _analyse(config: CaesarConfig, facts: Mapping[str, Mapping[str, int]]) -> tuple[Scales | None, str]:
    """The scales, or ``(None, why)`` when they do not fit."""
    a, b = facts[config.features], facts[config.labels]
    n = b["rows"]
    steps = config.epochs * -(-n // config.batch_size)
    spread = from_quarters(a["spread"]) + from_quarters(b["spread"])
    norms = {config.features: from_quarters(a["row_norm"]), config.labels: from_quarters(b["row_norm"])}
    joint = math.hypot(*norms.values())
    cols = a["cols"] + b["cols"]
    fx_min = min(a["x_frac_bits"], b["x_frac_bits"])
    if config.sigmoid == "linear":
        weight, kappa = _weight_bound(config, spread, steps, cols, fx_min, 0.0)
        z = joint * weight
    else:  # the smallest Z that the run provably keeps |z| below
        for q in range(-2 * QUARTERS, QUARTERS * MAX_WEIGHT_BITS):
            z = from_quarters(q)
            weight, kappa = _weight_bound(config, spread, steps, cols, fx_min, z)
            if joint * weight <= z:
                break
        else:
            return None, "no bound on |z| keeps the cubic's slope from amplifying the weights"
    if weight > 2.0**MAX_WEIGHT_BITS:
        return None, f"their bound exceeds 2^{MAX_WEIGHT_BITS}"
    unit = 2.0**-config.frac_bits
    product_bits = {p: _bits(r * weight) for p, r in norms.items()}
    q0, q1, q3 = CUBIC
    cubic_bits = _bits(q0 + q1 * (z + 4 * unit) + abs(q3) * (z + 4 * unit) ** 3) if config.sigmoid == "cubic" else 1
    share_bits = max(*product_bits.values(), cubic_bits) + config.frac_bits + MASK_SIGMA + 2
    low, high = _slopes(config, z)
    stable = 2.0 / (high * spread) if low >= 0 else 0.0
    scales = Scales(steps, spread, kappa, stable, weight, z, product_bits, _bits(weight), cubic_bits, share_bits)
    widest = max(slot for _, slot in slot_bits(config, scales, facts))
    capacity = plaintext_bits(config.he, config.key_bits)
    if widest > capacity:
        return None, f"their {widest}-bit packed slots do not fit the {capacity}-bit plaintexts of a {config.key_bits}-bit {config.he} key"
    return scales, ""


def slot_bits(config: CaesarConfig, scales: Scales, facts: Mapping[str, Mapping[str, int]]) -> list[tuple[str, int]]:
    """Every packed, masked message's slot width (``bound + sigma + 1`` bits), named."""
    fw, fe = config.weight_frac_bits, config.frac_bits
    out = []
    for party in (config.features, config.labels):
        fx = facts[party]["x_frac_bits"]
        out += [(f"{party}'s products", scales.product_bits[party] + fw + 2 * fx),
                (f"{party}'s weights", scales.weight_bits + fw + fx + (DECAY_BITS if config.l2 else 0))]
    if config.sigmoid == "cubic":
        out.append(("the cubic", scales.cubic_bits + 3 * fe + COEF_BITS))
    if config.report_loss:
        out.append(("the loss", loss_bits(config, scales, facts[config.labels]["rows"])))
    return [(name, bits + MASK_SIGMA + 1) for name, bits in out]


def loss_bits(config: CaesarConfig, scales: Scales, rows: int) -> int:
    """Bits of ``|sum e_P s_Q|`` (a residual share times the other's floored step share, summed over an epoch)."""
    return 2 * scales.share_bits + config.step_bits + rows.bit_length() + 2


def plan(config: CaesarConfig, facts: Mapping[str, Mapping[str, int]], hints: Mapping[str, str] | None = None) -> Scales:
    """The range analysis of one run from both parties' facts; ``ValueError`` if it cannot fit.

    ``hints`` (party -> text) adds what a party knows of its own block to the error (e.g.
    :func:`column_hint`); the error names the party whose batches are widest, the bound, the
    offending ``learning_rate`` and the largest one that the analysis accepts.
    """
    a, b = facts[config.features], facts[config.labels]
    if a["rows"] != b["rows"]:
        raise ValueError(f"the parties' blocks must have the same number of rows (aligned samples), "
                         f"got {a['rows']} at {config.features!r} and {b['rows']} at {config.labels!r}")
    scales, why = _analyse(config, facts)
    if scales is not None:
        return scales
    wide = max((config.features, config.labels), key=lambda p: facts[p]["spread"])
    spread = from_quarters(a["spread"]) + from_quarters(b["spread"])
    kappa, _ = step_growth(config, spread, 0.0)
    hint = f" ({hints[wide]})" if hints and wide in hints else ""
    works = _largest_rate(config, facts)
    raise ValueError(
        f"CAESAR's range analysis cannot bound the weights: party {wide!r} has mini-batches with ||X_S||^2/|S| "
        f"up to {from_quarters(facts[wide]['spread']):.3g}{hint}. With learning_rate={config.learning_rate:g} one "
        f"step of gradient descent (sigmoid={config.sigmoid!r}) may grow the weights by a factor of {kappa:.3g} "
        f"(the linear sigmoid's step is stable for learning_rate <= {8 / spread:.3g}), so over {config.epochs} "
        f"epoch{'s' if config.epochs > 1 else ''} {why}. Standardise the features of party {wide!r}"
        + (f", or use learning_rate <= {works:.3g}" if works else ", or lower learning_rate or epochs")
    )


def _largest_rate(config: CaesarConfig, facts: Mapping[str, Mapping[str, int]]) -> float | None:
    """The largest learning rate (to 1/8 of a bit, below the given one) that the analysis accepts."""
    def fits(log_rate: float) -> bool:
        return _analyse(replace(config, learning_rate=2.0**log_rate), facts)[0] is not None

    high = math.log2(config.learning_rate)
    low = high - _SEARCH_BITS
    if not fits(low):
        return None
    while high - low > 1 / 8:
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return 2.0**low


def schedule_facts(config: CaesarConfig, seed: bytes, blocks: Mapping[str, tuple[sp.csr_matrix, int]],
                   outputs: int) -> dict[str, dict[str, int]]:
    """Both parties' facts at once (the estimator's check before any message; the parties compute their own)."""
    n = next(iter(blocks.values()))[0].shape[0]
    schedule = batches(config, seed, n)
    return {p: block_facts(x, fx, schedule, outputs if p == config.labels else 0) for p, (x, fx) in blocks.items()}
