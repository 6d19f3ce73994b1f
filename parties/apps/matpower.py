"""Multi-round secret-shared iteration: ``matrix`` holds M (n x n), ``vector`` holds v; both learn M^k v.

Threat model: semi-honest, no collusion between the dealer and a compute party. M and v are
additively shared over Z_2^64 in fixed point; each of the ``k`` steps ``x <- M @ x`` is one Beaver
matrix product with a dealer triple (open ``M - A`` and ``x - B``, both uniform) followed by one
truncation round, so the run takes about 2k communication rounds. Both compute parties learn
M^k v and the shapes; the dealer learns only the shapes. Errors stay bounded when
||M||_inf < 1: ``e_{t+1} <= ||M||_inf e_t + n 2^-(f+1) (|x_t| + e_t) + 2^-f``.

Options: ``n`` (demo size, default 40), ``rounds`` (k, default 8), ``frac_bits`` (default 16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mpcml import DEFAULT_FRAC_BITS, DealerTriples, Session

from . import AppContext, CheckResult, demo_generator, get_option, read_csv, write_csv
from .matmul import deal

DESCRIPTION = "k rounds of x <- M @ x on a secret-shared matrix and vector (multi-round)"
DEMO_PARTIES = {"alice": "matrix", "bob": "vector", "dealer": "dealer"}


def iterate(
    party: Any, players: Sequence[str], dealer: str, value: np.ndarray | None, rounds: int, frac_bits: int
) -> np.ndarray:
    """Compute-party role: share M (``players[0]``) and v (``players[1]``), reveal M^rounds v to both."""
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
    rounds = ctx.option("rounds", int, 8)
    if rounds < 1:
        raise ValueError(f"option 'rounds' must be at least 1, got {rounds}")
    value = read_csv(ctx.require_data())
    if ctx.role == "matrix" and value.shape[0] != value.shape[1]:
        raise ValueError(f"the matrix in {str(ctx.data)!r} must be square, got shape {value.shape}")
    return iterate, (players, ctx.party_for("dealer"), value, rounds, ctx.option("frac_bits", int, DEFAULT_FRAC_BITS))


def demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]:
    n = get_option(options, "n", int, 40)
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
    rounds = get_option(options, "rounds", int, 8)
    expected = np.linalg.matrix_power(m, rounds) @ v
    bound = error_bound(m, v, rounds, get_option(options, "frac_bits", int, DEFAULT_FRAC_BITS))
    shape_ok = all(np.shape(outputs[pid]) == expected.shape for pid in ("alice", "bob"))
    error = max(float(np.max(np.abs(np.asarray(outputs[pid]) - expected))) for pid in ("alice", "bob"))
    return CheckResult(
        bool(shape_ok and error <= bound),
        f"M^{rounds} v with M {m.shape}: max |error| vs numpy = {error:.2e} (bound {bound:.2e})",
    )
