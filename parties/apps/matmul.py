"""Secret-shared matrix product: ``left`` holds X, ``right`` holds Y, both learn X @ Y.

Threat model: semi-honest; the third party (role ``dealer``) colludes with neither ``left`` nor
``right``. Fixed point over Z_2^64 (:mod:`mpcml.fixedpoint`) on either engine (option ``engine``):

- ``beaver`` (default): ``left`` and ``right`` share their matrices additively; the product is one
  Beaver matrix multiplication (Beaver, CRYPTO 1991) with a dealer triple ``(A, B, C = A @ B)``:
  they open ``E = X - A`` and ``F = Y - B`` (uniform, so they learn nothing) and compute shares of
  ``X @ Y = C + E @ B + A @ F + E @ F``, then truncate. The dealer learns only the shapes.
- ``rss3``: replicated sharing among ``left``, ``right`` and the third party as a compute party
  holding no input (:mod:`mpcml.rss3`; honest majority: any one of the three learns nothing, two
  together learn everything, the same trust the dealer needs). The product sends only its result;
  it is opened to ``left`` and ``right``, the third party learns the shapes and nothing else.

``left`` and ``right`` learn the product and each other's matrix shapes. Before sharing, each
announces its matrix's shape and ``ceil(log2 max|.|)`` to the other compute parties (so they learn
its magnitude to a power of two), and all refuse a product that could leave the ring
(``k max|X| max|Y| >= 2^(62 - 2 frac_bits)``) with an error naming the bound.

Options: ``frac_bits``, ``engine`` (``mpcml options matmul``); demo data: ``n``, ``k``, ``m`` (X is
n x k, Y is k x m).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mpcml import DEFAULT_FRAC_BITS, fixedpoint, run_dealer
from mpcml.engine import ENGINES
from mpcml.schema import Int, Record
from mpcml.tensor import SharedTensor
from mpcml.session import Session, make_session
from protocols.common import magnitude_bits
from protocols.config import ProtocolConfig, integer, one_of, option

from . import AppContext, CheckResult, demo_generator, parse, read_csv, write_csv

DESCRIPTION = "secret-shared matrix product X @ Y of two parties' private matrices (dealer triples, or rss3)"
DEMO_PARTIES = {"alice": "left", "bob": "right", "dealer": "dealer"}
FACTS = Record(rows=Int(low=1), cols=Int(low=1), bits=Int(-64, 2048))


@dataclass(frozen=True)
class CONFIG(ProtocolConfig):
    frac_bits: int = option(DEFAULT_FRAC_BITS, "fractional bits of the fixed-point encoding", integer(0, 30))
    engine: str = option("beaver", "`beaver` (the dealer deals Beaver triples) or `rss3` (replicated sharing; the "
                         "dealer party is the third compute party)", one_of(*ENGINES))


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    n: int = option(200, "rows of X", integer(1))
    k: int = option(50, "columns of X = rows of Y", integer(1))
    m: int = option(30, "columns of Y", integer(1))


def compute_parties(players: Sequence[str], helper: str, engine: str) -> tuple[str, ...]:
    """The session's players: the two holders, and for ``rss3`` the third party (``helper``) as well."""
    return (*players, helper) if engine == "rss3" else tuple(players)


def exchange_facts(party: Any, players: Sequence[str], helper: str, engine: str, facts: dict | None
                   ) -> dict[str, dict[str, int]]:
    """1. A holder sends its matrix's ``facts`` (shape and a magnitude) to the other compute parties;
    returns both holders' facts at every compute party."""
    compute = compute_parties(players, helper, engine)
    if facts is not None:
        party.send_all([p for p in compute if p != party.id], facts)
    got = party.gather([p for p in players if p != party.id], expect=FACTS, what="shape and magnitude")
    return {**got, **({party.id: facts} if facts is not None else {})}


def reveal_to_holders(result: SharedTensor, players: Sequence[str]) -> np.ndarray | None:
    """The value at both holders (one round); the third player of ``rss3`` opens only zeros."""
    session = result.session
    if len(session.players) == len(players):
        return result.reveal()
    parts = {pid: result if pid in players else session.zeros(result.shape) for pid in session.players}
    opened = session.open_to_each(parts)
    return fixedpoint.decode(opened, session.frac_bits) if session.party.id in players else None


def check_product_bits(bits: int, frac_bits: int) -> None:
    """A product of encoded values can reach ``2^bits`` before truncation: it must stay below ``2^(62 - 2 frac_bits)``."""
    if bits >= 62 - 2 * frac_bits:
        raise ValueError(f"the product can reach 2^{bits}, outside the fixed-point range 2^{62 - 2 * frac_bits} at "
                         f"frac_bits={frac_bits}; scale the matrices down or use frac_bits={max(0, (61 - bits) // 2)}")


def open_session(party: Any, players: Sequence[str], helper: str, engine: str, frac_bits: int) -> Session:
    """The compute parties' session on ``engine`` (``beaver``: triples from ``helper``, the dealer)."""
    return make_session(party, compute_parties(players, helper, engine), engine, dealer=helper, frac_bits=frac_bits)


def multiply(party: Any, players: Sequence[str], dealer: str, matrix: np.ndarray | None, frac_bits: int,
             engine: str = "beaver") -> np.ndarray | None:
    """Compute-party role: share X (at ``players[0]``) and Y (at ``players[1]``), reveal X @ Y to both.

    With ``engine="rss3"`` the party ``dealer`` runs this role too, as the third player, with no
    matrix (it returns ``None``).

    1. Exchange shapes and magnitudes and refuse a product that could leave the ring.
    2. Share X and Y; one matrix product and one truncation; reveal to ``players``.
    """
    facts = None
    if matrix is not None:
        facts = {"rows": int(matrix.shape[0]), "cols": int(matrix.shape[1]), "bits": magnitude_bits(matrix)}
    # 1. shapes and magnitudes
    known = exchange_facts(party, players, dealer, engine, facts)
    left, right = known[players[0]], known[players[1]]
    if left["cols"] != right["rows"]:
        raise ValueError(f"X is {(left['rows'], left['cols'])} and Y is {(right['rows'], right['cols'])}: "
                         "the inner dimensions differ")
    check_product_bits(left["cols"].bit_length() + left["bits"] + right["bits"], frac_bits)
    # 2. the product on shares
    session = open_session(party, players, dealer, engine, frac_bits)
    x = session.input(matrix if party.id == players[0] else None, owner=players[0], name="left matrix")
    y = session.input(matrix if party.id == players[1] else None, owner=players[1], name="right matrix")
    product = reveal_to_holders(x @ y, players)
    session.close()
    return product


def deal(party: Any, players: Sequence[str]) -> dict[str, int]:
    """Dealer role: serve triples until the compute parties close the session."""
    return run_dealer(party, players)


def _players(ctx: AppContext) -> tuple[str, str]:
    return ctx.party_for("left"), ctx.party_for("right")


def build(ctx: AppContext) -> tuple[Callable[..., Any], tuple]:
    players = _players(ctx)
    config = ctx.config()
    if ctx.role == "dealer":
        if config.engine == "rss3":
            return multiply, (players, ctx.party_id, None, config.frac_bits, config.engine)
        return deal, (players,)
    if ctx.role not in ("left", "right"):
        raise ValueError(f"matmul has roles left, right and dealer, not {ctx.role!r}")
    return multiply, (players, ctx.party_for("dealer"), read_csv(ctx.require_data()), config.frac_bits, config.engine)


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    demo = parse(options, DEMO, CONFIG)
    n, k, m = demo.n, demo.k, demo.m
    rng = demo_generator(seed)
    return {
        "alice": write_csv(Path(out_dir) / "alice.csv", rng.normal(size=(n, k))),
        "bob": write_csv(Path(out_dir) / "bob.csv", rng.normal(size=(k, m))),
    }


def error_bound(x: np.ndarray, y: np.ndarray, frac_bits: int) -> float:
    """Worst-case |error| of a fixed-point product: input rounding (2^-(f+1) each) plus one truncation unit."""
    ulp = 2.0 ** -frac_bits
    k = x.shape[1]
    return k * (np.abs(x).max() + np.abs(y).max()) * ulp / 2 + k * ulp * ulp / 4 + 2 * ulp


def check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult:
    x, y = read_csv(data["alice"]), read_csv(data["bob"])
    expected = x @ y
    bound = error_bound(x, y, parse(options, CONFIG, DEMO).frac_bits)
    errors = [float(np.max(np.abs(np.asarray(outputs[pid]) - expected))) for pid in ("alice", "bob")]
    shape_ok = all(np.shape(outputs[pid]) == expected.shape for pid in ("alice", "bob"))
    return CheckResult(
        bool(shape_ok and max(errors) <= bound),
        f"{x.shape} @ {y.shape}: max |error| vs numpy = {max(errors):.2e} (bound {bound:.2e})",
    )
