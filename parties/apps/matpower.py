"""Multi-round secret-shared iteration: ``matrix`` holds M (n x n), ``vector`` holds v; both learn M^k v.

Threat model: semi-honest, no collusion between the dealer and a compute party. M and v are
additively shared over Z_2^64 in fixed point; each of the ``k`` steps ``x <- M @ x`` is one Beaver
matrix product with a dealer triple (open ``M - A`` and ``x - B``, both uniform) followed by one
truncation round, so the run takes about 2k communication rounds. Both compute parties learn
M^k v and the shapes; the dealer learns only the shapes. Errors stay bounded when
||M||_inf < 1: ``e_{t+1} <= ||M||_inf e_t + n 2^-(f+1) (|x_t| + e_t) + 2^-f``.

Before sharing, the parties exchange shapes and magnitudes: the matrix holder announces
``ceil(log2 ||M||_inf)``, the vector holder ``ceil(log2 max|v|)``; every intermediate ``M^t v`` is
then bounded by ``||M||_inf^t max|v|`` and a run that could leave the ring is refused.

Options: ``rounds`` (k) and ``frac_bits`` (``mpcml options matpower``); demo data: ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mpcml import DEFAULT_FRAC_BITS, DealerTriples, Session
from protocols.common import magnitude_bits
from protocols.config import ProtocolConfig, integer, option

from . import AppContext, CheckResult, demo_generator, parse, read_csv, write_csv
from .matmul import FACTS, check_product_bits, deal

DESCRIPTION = "k rounds of x <- M @ x on a secret-shared matrix and vector (multi-round)"
DEMO_PARTIES = {"alice": "matrix", "bob": "vector", "dealer": "dealer"}


@dataclass(frozen=True)
class CONFIG(ProtocolConfig):
    rounds: int = option(8, "k: the number of steps x <- M @ x", integer(1, 10_000_000))
    frac_bits: int = option(DEFAULT_FRAC_BITS, "fractional bits of the fixed-point encoding", integer(0, 30))


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    n: int = option(40, "size of the demo matrix M (n x n) and vector v", integer(1))


def _norm_bits(value: np.ndarray, is_matrix: bool) -> int:
    return magnitude_bits(np.abs(value).sum(axis=1)) if is_matrix else magnitude_bits(value)


def iterate(
    party: Any, players: Sequence[str], dealer: str, value: np.ndarray | None, rounds: int, frac_bits: int
) -> np.ndarray:
    """Compute-party role: share M (``players[0]``) and v (``players[1]``), reveal M^rounds v to both.

    1. Exchange shapes and magnitudes (``||M||_inf`` and ``max|v|`` to a power of two); refuse a run
       whose intermediates could leave the ring.
    2. Share M and v; ``rounds`` Beaver products ``x <- M @ x``; reveal.
    """
    is_matrix = party.id == players[0]
    peer = players[1] if is_matrix else players[0]
    # 1. shapes and magnitudes
    party.send(peer, {"rows": int(value.shape[0]), "cols": int(value.shape[1]), "bits": _norm_bits(value, is_matrix)})
    theirs = party.recv(peer, expect=FACTS, what="shape and magnitude")
    m_bits, v_bits = (_norm_bits(value, True), theirs["bits"]) if is_matrix else (theirs["bits"], _norm_bits(value, False))
    # |M x_t| <= ||M||_inf^(t+1) max|v| before the truncation of step t
    check_product_bits(max(m_bits, m_bits * rounds) + v_bits, frac_bits)
    # 2. the iteration on shares
    session = Session(party, players, DealerTriples(party, players, dealer=dealer), frac_bits)
    m = session.input(value if party.id == players[0] else None, owner=players[0], name="matrix")
    x = session.input(value if party.id == players[1] else None, owner=players[1], name="vector")
    for _ in range(rounds):
        x = m @ x
    result = x.reveal()
    session.close()
    return result


def build(ctx: AppContext) -> tuple[Callable[..., Any], tuple]:
    players = (ctx.party_for("matrix"), ctx.party_for("vector"))
    if ctx.role == "dealer":
        return deal, (players,)
    if ctx.role not in ("matrix", "vector"):
        raise ValueError(f"matpower has roles matrix, vector and dealer, not {ctx.role!r}")
    config = ctx.config()
    value = read_csv(ctx.require_data())
    if ctx.role == "matrix" and value.shape[0] != value.shape[1]:
        raise ValueError(f"the matrix in {str(ctx.data)!r} must be square, got shape {value.shape}")
    return iterate, (players, ctx.party_for("dealer"), value, config.rounds, config.frac_bits)


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    n = parse(options, DEMO, CONFIG).n
    rng = demo_generator(seed)
    m = rng.uniform(size=(n, n))
    m *= 0.95 / m.sum(axis=1, keepdims=True)
    return {
        "alice": write_csv(Path(out_dir) / "alice.csv", m),
        "bob": write_csv(Path(out_dir) / "bob.csv", rng.normal(size=(n, 1))),
    }


def error_bound(m: np.ndarray, v: np.ndarray, rounds: int, frac_bits: int) -> float:
    """The bound of the module docstring, iterated over the plaintext trajectory."""
    ulp = 2.0 ** -frac_bits
    norm = np.abs(m).sum(axis=1).max()
    n = m.shape[1]
    x, err = v, ulp / 2
    for _ in range(rounds):
        err = norm * err + n * ulp / 2 * (np.abs(x).max() + err) + ulp
        x = m @ x
    return float(err)


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    m, v = read_csv(data["alice"]), read_csv(data["bob"])
    config = parse(options, CONFIG, DEMO)
    rounds = config.rounds
    expected = np.linalg.matrix_power(m, rounds) @ v
    bound = error_bound(m, v, rounds, config.frac_bits)
    shape_ok = all(np.shape(outputs[pid]) == expected.shape for pid in ("alice", "bob"))
    error = max(float(np.max(np.abs(np.asarray(outputs[pid]) - expected))) for pid in ("alice", "bob"))
    return CheckResult(
        bool(shape_ok and error <= bound),
        f"M^{rounds} v with M {m.shape}: max |error| vs numpy = {error:.2e} (bound {bound:.2e})",
    )
