"""Multi-round secret-shared iteration: ``matrix`` holds M (n x n), ``vector`` holds v; both learn M^k v.

Threat model: semi-honest; the third party (role ``dealer``) colludes with neither holder. M and v
are shared over Z_2^64 in fixed point on either engine (option ``engine``, as in
:mod:`parties.apps.matmul`): ``beaver``, each of the ``k`` steps ``x <- M @ x`` is one Beaver
matrix product with a dealer triple (open ``M - A`` and ``x - B``, both uniform) followed by one
truncation round; ``rss3``, the dealer party is the third compute party (replicated sharing,
honest majority) and each step is a replicated product whose truncation takes two rounds. Either
way about 2k communication rounds. Both holders learn M^k v and the shapes; the third party learns
only the shapes. Errors stay bounded when ||M||_inf < 1 (each truncation is exact up to one unit
on both engines): ``e_{t+1} <= ||M||_inf e_t + n 2^-(f+1) (|x_t| + e_t) + 2^-f``.

Before sharing, the parties exchange shapes and magnitudes: the matrix holder announces
``ceil(log2 ||M||_inf)``, the vector holder ``ceil(log2 max|v|)``; every intermediate ``M^t v`` is
then bounded by ``||M||_inf^t max|v|`` and a run that could leave the ring is refused.

Options: ``rounds`` (k), ``frac_bits`` and ``engine`` (``mpcml options matpower``); demo data: ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from protocols.common import magnitude_bits
from protocols.config import ProtocolConfig, integer, option

from . import AppContext, CheckResult, demo_generator, parse, read_csv, write_csv
from . import matmul
from .matmul import check_product_bits, deal, exchange_facts, open_session, reveal_to_holders

DESCRIPTION = "k rounds of x <- M @ x on a secret-shared matrix and vector (multi-round; dealer triples or rss3)"
DEMO_PARTIES = {"alice": "matrix", "bob": "vector", "dealer": "dealer"}


@dataclass(frozen=True)
class CONFIG(matmul.CONFIG):
    """matmul's options (``frac_bits``, ``engine``) and the number of steps."""

    rounds: int = option(8, "k: the number of steps x <- M @ x", integer(1, 10_000_000))


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    n: int = option(40, "size of the demo matrix M (n x n) and vector v", integer(1))


def _norm_bits(value: np.ndarray, is_matrix: bool) -> int:
    return magnitude_bits(np.abs(value).sum(axis=1)) if is_matrix else magnitude_bits(value)


def iterate(
    party: Any, players: Sequence[str], dealer: str, value: np.ndarray | None, rounds: int, frac_bits: int,
    engine: str = "beaver",
) -> np.ndarray | None:
    """Compute-party role: share M (``players[0]``) and v (``players[1]``), reveal M^rounds v to both.

    With ``engine="rss3"`` the party ``dealer`` runs this role too, as the third player, with no
    value (it returns ``None``).

    1. Exchange shapes and magnitudes (``||M||_inf`` and ``max|v|`` to a power of two); refuse a run
       whose intermediates could leave the ring.
    2. Share M and v; ``rounds`` products ``x <- M @ x``; reveal to ``players``.
    """
    facts = None
    if value is not None:
        facts = {"rows": int(value.shape[0]), "cols": int(value.shape[1]),
                 "bits": _norm_bits(value, party.id == players[0])}
    # 1. shapes and magnitudes
    known = exchange_facts(party, players, dealer, engine, facts)
    m_bits, v_bits = known[players[0]]["bits"], known[players[1]]["bits"]
    # |M x_t| <= ||M||_inf^(t+1) max|v| before the truncation of step t
    check_product_bits(max(m_bits, m_bits * rounds) + v_bits, frac_bits)
    # 2. the iteration on shares
    session = open_session(party, players, dealer, engine, frac_bits)
    m = session.input(value if party.id == players[0] else None, owner=players[0], name="matrix")
    x = session.input(value if party.id == players[1] else None, owner=players[1], name="vector")
    for _ in range(rounds):
        x = m @ x
    result = reveal_to_holders(x, players)
    session.close()
    return result


def build(ctx: AppContext) -> tuple[Callable[..., Any], tuple]:
    players = (ctx.party_for("matrix"), ctx.party_for("vector"))
    config = ctx.config()
    if ctx.role == "dealer":
        if config.engine == "rss3":
            return iterate, (players, ctx.party_id, None, config.rounds, config.frac_bits, config.engine)
        return deal, (players,)
    if ctx.role not in ("matrix", "vector"):
        raise ValueError(f"matpower has roles matrix, vector and dealer, not {ctx.role!r}")
    value = read_csv(ctx.require_data())
    if ctx.role == "matrix" and value.shape[0] != value.shape[1]:
        raise ValueError(f"the matrix in {str(ctx.data)!r} must be square, got shape {value.shape}")
    return iterate, (players, ctx.party_for("dealer"), value, config.rounds, config.frac_bits, config.engine)


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
