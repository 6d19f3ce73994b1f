"""HybridAlpha's public parameters and its range analysis.

:class:`HybridAlphaConfig` is the one place the options and their defaults live (the estimator,
the party app and the tests build it). :func:`plan` is the range analysis, run by the aggregator
on the parties' public set-up facts before any update is encrypted (and by the estimator before
any party starts): it fixes the bound on a quantised update entry and shows that the sum of every
party's update fits the discrete-log search (below ``q / 2`` of the FE group and within
:func:`protocols.fe_authority.searchable`, so a decryption takes under a second per value), int64
arithmetic (hence a packing slot of ``scheme="paillier-packed"``: at most ``62 + 2 + log2(n)`` bits,
far inside any Paillier or OU key: 681 plaintext bits at 2048); or it refuses with a ``ValueError`` naming the parameter, the bound
and a value that works.

The update bound. Without ``max_abs`` it is proved from the local trainer's public parameters
and ``x_max = 2^x_bits`` (the largest ``ceil(log2 max|x|)`` the parties announce; the intercept
column counts as 1): a local step moves a weight by at most ``eta (x_max + alpha |w|)`` (the
logistic error is in ``(-1, 1)``), and while ``eta alpha <= 2`` no weight ever exceeds
``W = rounds * local_epochs * eta * x_max``, so an update is at most
``U = local_epochs * eta * (x_max + alpha W)``. With DP the update is clipped to L2 norm ``C``
and carries Gaussian noise of standard deviation ``sigma_p``: ``U = min(U, C) + 10 sigma_p``
(a noise draw beyond 10 standard deviations, probability below 2e-23 per entry, stops the run
with ``OverflowError``). An explicit ``max_abs`` replaces the analysis (for custom local
updates); an update beyond it stops the run with ``OverflowError`` naming the round and party.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from mpcml.dp import analytic_gaussian_sigma, share_sigma
from mpcml.fe import DEFAULT_GROUP, GROUPS, group_by_name

from ..common import check_party_ids
from ..config import ProtocolConfig, boolean, fe_group, he_key_bits, he_option, integer, number, one_of, option, optional
from ..fe_authority import searchable

SCHEMES = ("fe", "paillier-packed", "phe", "plain")
DP_TAIL = 10.0
"""Standard deviations of DP noise the update bound allows (``P(|N(0,1)| > 10) < 2e-23``)."""
INT_LIMIT = 2**62
"""Sums of quantised updates stay below this (int64 arithmetic with headroom)."""


def _probability(name: str, value: Any) -> float:
    value = number()(name, value)
    if value >= 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


@dataclass(frozen=True)
class HybridAlphaConfig(ProtocolConfig):
    """Everything the parties, the aggregator and the TPA of one run agree on: the options, then the ids."""

    rounds: int = option(10, "federated-averaging rounds", integer(1, 100_000))
    local_epochs: int = option(5, "full-batch gradient steps each party takes per round", integer(1, 10_000))
    learning_rate: float = option(0.5, "step size eta of the local gradient steps", number(high=1024))
    alpha: float = option(0.0, "L2 penalty of the local steps (the intercept is not penalised)", number(positive=False))
    fit_intercept: bool = option(True, "learn an intercept (a column of ones at every party)", boolean)
    scheme: str = option("fe", "`fe` (multi-input functional encryption) or the baselines `paillier-packed`, `phe`, "
                         "`plain`", one_of(*SCHEMES))
    min_parties: int = option(2, "t: the TPA refuses a key for fewer responders (inference prevention)", integer(1))
    insecure_allow_single_party: bool = option(False, "INSECURE: accept min_parties=1, which lets the aggregator "
                                               "decrypt a single party's update (no inference prevention)", boolean)
    deadline: float = option(30.0, "seconds the aggregator waits for a round's updates; later parties drop out",
                             number(high=86_400))
    frac_bits: int = option(16, "fractional bits of the quantised updates", integer(0, 40))
    max_abs: float | None = option(None, "bound on every update entry; none: from the range analysis",
                                   optional(number()))
    dp_epsilon: float | None = option(None, "per-round (epsilon, delta)-DP of the aggregate; none: no noise",
                                      optional(number()))
    dp_delta: float = option(1e-5, "delta of the per-round DP guarantee", _probability)
    dp_clip: float = option(1.0, "L2 norm each party clips its update to (with DP)", number())
    group: str = option(DEFAULT_GROUP.name, f"FE group, one of {sorted(GROUPS)}", fe_group)
    he: str = he_option("`scheme=paillier-packed` (`phe` is always Paillier)")
    paillier_bits: int = option(2048, "modulus size of the keys of the baselines `paillier-packed` (scheme `he`) and "
                                "`phe`", he_key_bits)
    precompute: bool = option(False, "`fe` only: prepare every round's encryption masks and key pads at set-up",
                              boolean)
    parties: tuple[str, ...] = ()
    tpa: str = "tpa"
    aggregator: str = "aggregator"

    def validate(self) -> None:
        ids = check_party_ids(self.parties, "parties")
        check_party_ids((*ids, self.tpa, self.aggregator), "party, tpa and aggregator ids")
        if self.min_parties < 2 and not self.insecure_allow_single_party:
            raise ValueError(f"min_parties={self.min_parties} lets the TPA issue a key for one party's update alone, "
                             "which switches inference prevention off; use min_parties >= 2 (or, knowingly, "
                             "insecure_allow_single_party=True)")
        if self.min_parties > len(ids):
            raise ValueError(f"min_parties={self.min_parties} exceeds the {len(ids)} parties {list(ids)}")
        if self.learning_rate * self.alpha > 2.0:
            raise ValueError(f"learning_rate * alpha = {self.learning_rate * self.alpha:g} > 2: the penalty step "
                             "alone diverges; lower learning_rate or alpha")
        if self.precompute and self.scheme != "fe":
            raise ValueError(f"precompute applies to scheme='fe' only, got scheme={self.scheme!r}")

    @property
    def party_sigma(self) -> float | None:
        """Each party's DP noise standard deviation ``sigma / sqrt(t)`` (``None`` without DP)."""
        if self.dp_epsilon is None:
            return None
        return share_sigma(analytic_gaussian_sigma(self.dp_clip, self.dp_epsilon, self.dp_delta), self.min_parties)

    def label(self, rnd: int) -> tuple[int, str]:
        """The FE label of round ``rnd``'s updates."""
        return (rnd, "update")


@dataclass(frozen=True)
class Plan:
    """The outcome of the range analysis (public; the aggregator sends it to the TPA and the parties).

    ``parties``: those that answered the set-up, in configuration order (their FE slots).
    ``bound``: the largest ``|round(u * 2^frac_bits)|`` of an update entry ``u``.
    """

    parties: tuple[str, ...]
    n_params: int
    bound: int

    def to_wire(self) -> dict[str, Any]:
        return {"parties": list(self.parties), "n_params": self.n_params, "bound": self.bound}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> "Plan":
        return cls(tuple(obj["parties"]), int(obj["n_params"]), int(obj["bound"]))

    def slot_bits(self) -> int:
        """Packed-Paillier slot width: the value, its sign and the carries of a sum over every party."""
        return self.bound.bit_length() + 2 + len(self.parties).bit_length()


def trainer_bound(config: HybridAlphaConfig, x_bits: int) -> float:
    """``U``: the largest update entry of the local logistic trainer (module docstring)."""
    x_max = max(2.0**x_bits, 1.0 if config.fit_intercept else 0.0)
    eta = config.learning_rate
    weight = config.rounds * config.local_epochs * eta * x_max
    return config.local_epochs * eta * (x_max + config.alpha * weight)


def update_bound(config: HybridAlphaConfig, x_bits: int | None) -> float:
    """The bound on an update entry: ``max_abs``, or the analysed one (DP clip and noise included)."""
    sigma = config.party_sigma
    if config.max_abs is not None:
        bound = config.max_abs
    elif x_bits is not None:
        bound = trainer_bound(config, x_bits)
    elif sigma is not None:
        bound = config.dp_clip
    else:
        raise ValueError("max_abs is required when the parties' updates do not come from the logistic trainer "
                         "(no public x_bits to analyse) and are not clipped for DP")
    return bound if sigma is None else min(bound, config.dp_clip) + DP_TAIL * sigma


def plan(config: HybridAlphaConfig, facts: Mapping[str, Mapping[str, Any]]) -> Plan:
    """The range analysis from the facts ``{party: {"n_params", "x_bits"}}`` of the parties that answered."""
    parties = tuple(p for p in config.parties if p in facts)
    if len(parties) < config.min_parties:
        raise ValueError(f"only {len(parties)} parties answered the set-up ({list(parties)}); min_parties is "
                         f"{config.min_parties}")
    sizes = {p: facts[p]["n_params"] for p in parties}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the parties' models have different numbers of parameters {sizes} "
                         "(columns, intercept and classes must agree)")
    bits = [facts[p]["x_bits"] for p in parties]
    x_bits = None if any(b is None for b in bits) else max(bits)
    limit = min(searchable(group_by_name(config.group)), INT_LIMIT) if config.scheme == "fe" else INT_LIMIT
    value = update_bound(config, x_bits)
    bound = math.ceil(value * 2.0**config.frac_bits)
    if len(parties) * bound >= limit:
        fits = [f for f in range(config.frac_bits - 1, -1, -1) if len(parties) * value * 2.0**f < limit]
        raise ValueError(
            f"frac_bits={config.frac_bits}: the sum of {len(parties)} updates with entries up to {value:.4g} needs "
            f"{(len(parties) * bound).bit_length()} bits, above the {limit.bit_length() - 1} bits "
            f"{'the discrete-log search covers' if config.scheme == 'fe' else 'of int64 headroom'}; use frac_bits={fits[0] if fits else 0}"
            + ("" if fits else ", lower max_abs, learning_rate or the number of rounds"))
    return Plan(parties, next(iter(sizes.values())), max(bound, 1))


def update_guard_error(rnd: int, party: str, value: float, config: HybridAlphaConfig, plan: Plan) -> OverflowError:
    """A party's update left the agreed bound (explicit ``max_abs``, custom updates or a DP tail event)."""
    agreed = plan.bound / 2.0**config.frac_bits
    return OverflowError(
        f"HybridAlpha round {rnd}: party {party!r}'s update has an entry of magnitude {value:.6g}, above the agreed "
        f"bound {agreed:.6g} (max_abs={config.max_abs}); set max_abs to at least {value:.6g}"
        + ("" if config.max_abs is None else " or leave it unset for the analysed bound"))
