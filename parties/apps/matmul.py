"""Secret-shared matrix product: ``left`` holds X, ``right`` holds Y, both learn X @ Y.

Threat model: semi-honest, no collusion between the dealer and a compute party. Each compute
party secret-shares its matrix additively over Z_2^64 (fixed point, :mod:`mpcml.fixedpoint`);
the product is one Beaver matrix multiplication (Beaver, CRYPTO 1991) with a dealer triple
``(A, B, C = A @ B)``: the parties open ``E = X - A`` and ``F = Y - B`` (uniform, so they learn
nothing) and compute shares of ``X @ Y = C + E @ B + A @ F + E @ F``, then truncate.
``left`` and ``right`` learn the product and each other's matrix shapes; the dealer learns only
the shapes (it sees no share of the inputs).

Options: ``n``, ``k``, ``m`` (demo shapes: X is n x k, Y is k x m; default 200, 50, 30) and
``frac_bits`` (fixed-point fractional bits, default 16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mpcml import DEFAULT_FRAC_BITS, DealerTriples, Session, run_dealer

from . import AppContext, CheckResult, demo_generator, get_option, read_csv, write_csv

DESCRIPTION = "secret-shared matrix product X @ Y of two parties' private matrices (dealer triples)"
DEMO_PARTIES = {"alice": "left", "bob": "right", "dealer": "dealer"}


def multiply(party: Any, players: Sequence[str], dealer: str, matrix: np.ndarray | None, frac_bits: int) -> np.ndarray:
    """Compute-party role: share X (at ``players[0]``) and Y (at ``players[1]``), reveal X @ Y to both."""
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
    frac_bits = ctx.option("frac_bits", int, DEFAULT_FRAC_BITS)
    return multiply, (players, ctx.party_for("dealer"), read_csv(ctx.require_data()), frac_bits)


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    n, k, m = (get_option(options, name, int, default) for name, default in (("n", 200), ("k", 50), ("m", 30)))
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
    bound = error_bound(x, y, get_option(options, "frac_bits", int, DEFAULT_FRAC_BITS))
    errors = [float(np.max(np.abs(np.asarray(outputs[pid]) - expected))) for pid in ("alice", "bob")]
    shape_ok = all(np.shape(outputs[pid]) == expected.shape for pid in ("alice", "bob"))
    return CheckResult(
        bool(shape_ok and max(errors) <= bound),
        f"{x.shape} @ {y.shape}: max |error| vs numpy = {max(errors):.2e} (bound {bound:.2e})",
    )
