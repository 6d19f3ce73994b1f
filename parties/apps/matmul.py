"""Secret-shared matrix product: ``left`` holds X, ``right`` holds Y, both learn X @ Y.

Threat model: semi-honest, no collusion between the dealer and a compute party. Each compute
party secret-shares its matrix additively over Z_2^64 (fixed point, :mod:`mpcml.fixedpoint`);
the product is one Beaver matrix multiplication (Beaver, CRYPTO 1991) with a dealer triple
``(A, B, C = A @ B)``: the parties open ``E = X - A`` and ``F = Y - B`` (uniform, so they learn
nothing) and compute shares of ``X @ Y = C + E @ B + A @ F + E @ F``, then truncate.
``left`` and ``right`` learn the product and each other's matrix shapes; the dealer learns only
the shapes (it sees no share of the inputs).

Before sharing, each party announces its matrix's shape and ``ceil(log2 max|.|)`` (so both learn
the other's magnitude to a power of two), and both refuse a product that could leave the ring
(``k max|X| max|Y| >= 2^(62 - 2 frac_bits)``) with an error naming the bound.

Options: ``frac_bits`` (``mpcml options matmul``); demo data: ``n``, ``k``, ``m`` (X is n x k, Y is
k x m).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mpcml import DEFAULT_FRAC_BITS, DealerTriples, Session, run_dealer
from mpcml.schema import Int, Record
from protocols.common import magnitude_bits
from protocols.config import ProtocolConfig, integer, option

from . import AppContext, CheckResult, demo_generator, parse, read_csv, write_csv

DESCRIPTION = "secret-shared matrix product X @ Y of two parties' private matrices (dealer triples)"
DEMO_PARTIES = {"alice": "left", "bob": "right", "dealer": "dealer"}
FACTS = Record(rows=Int(low=1), cols=Int(low=1), bits=Int(-64, 2048))


@dataclass(frozen=True)
class CONFIG(ProtocolConfig):
    frac_bits: int = option(DEFAULT_FRAC_BITS, "fractional bits of the fixed-point encoding", integer(0, 30))


@dataclass(frozen=True)
class DEMO(ProtocolConfig):
    n: int = option(200, "rows of X", integer(1))
    k: int = option(50, "columns of X = rows of Y", integer(1))
    m: int = option(30, "columns of Y", integer(1))


def exchange_magnitudes(party: Any, peer: str, matrix: np.ndarray) -> dict[str, int]:
    """1. Send this matrix's shape and magnitude to ``peer``; returns the peer's."""
    party.send(peer, {"rows": int(matrix.shape[0]), "cols": int(matrix.shape[1]), "bits": magnitude_bits(matrix)})
    return party.recv(peer, expect=FACTS, what="shape and magnitude")


def check_product_bits(bits: int, frac_bits: int) -> None:
    """A product of encoded values can reach ``2^bits`` before truncation: it must stay below ``2^(62 - 2 frac_bits)``."""
    if bits >= 62 - 2 * frac_bits:
        raise ValueError(f"the product can reach 2^{bits}, outside the fixed-point range 2^{62 - 2 * frac_bits} at "
                         f"frac_bits={frac_bits}; scale the matrices down or use frac_bits={max(0, (61 - bits) // 2)}")


def multiply(party: Any, players: Sequence[str], dealer: str, matrix: np.ndarray | None, frac_bits: int) -> np.ndarray:
    """Compute-party role: share X (at ``players[0]``) and Y (at ``players[1]``), reveal X @ Y to both.

    1. Exchange shapes and magnitudes and refuse a product that could leave the ring.
    2. Share X and Y; one Beaver matrix product and one truncation; reveal.
    """
    peer = players[1] if party.id == players[0] else players[0]
    # 1. shapes and magnitudes
    theirs = exchange_magnitudes(party, peer, matrix)
    left, right = ((matrix.shape, magnitude_bits(matrix)), ((theirs["rows"], theirs["cols"]), theirs["bits"]))
    if party.id == players[1]:
        left, right = right, left
    if left[0][1] != right[0][0]:
        raise ValueError(f"X is {left[0]} and Y is {right[0]}: the inner dimensions differ")
    check_product_bits(left[0][1].bit_length() + left[1] + right[1], frac_bits)
    # 2. the product on shares
    session = Session(party, players, DealerTriples(party, players, dealer=dealer), frac_bits)
    x = session.input(matrix if party.id == players[0] else None, owner=players[0], name="left matrix")
    y = session.input(matrix if party.id == players[1] else None, owner=players[1], name="right matrix")
    product = (x @ y).reveal()
    session.close()
    return product


def deal(party: Any, players: Sequence[str]) -> dict[str, int]:
    """Dealer role: serve triples until the compute parties close the session."""
    return run_dealer(party, players)


def _players(ctx: AppContext) -> tuple[str, str]:
    return ctx.party_for("left"), ctx.party_for("right")


def build(ctx: AppContext) -> tuple[Callable[..., Any], tuple]:
    players = _players(ctx)
    if ctx.role == "dealer":
        return deal, (players,)
    if ctx.role not in ("left", "right"):
        raise ValueError(f"matmul has roles left, right and dealer, not {ctx.role!r}")
    config = ctx.config()
    return multiply, (players, ctx.party_for("dealer"), read_csv(ctx.require_data()), config.frac_bits)


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
