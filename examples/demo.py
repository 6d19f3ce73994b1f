"""Two parties multiply their private matrices under secret sharing; a dealer supplies triples.

Run: ``make demo`` (or ``python -m examples.demo``). Prints the error against numpy and each
party's bytes and rounds.
"""

from __future__ import annotations

import time

import numpy as np

from mpcml import DealerTriples, Session, run_dealer, run_local

PLAYERS = ("alice", "bob")


def compute_party(party, matrix):
    session = Session(party, PLAYERS, DealerTriples(party, PLAYERS, dealer="dealer"))
    x = session.input(matrix if party.id == "alice" else None, owner="alice", name="alice's matrix")
    y = session.input(matrix if party.id == "bob" else None, owner="bob", name="bob's matrix")
    product = (x @ y).reveal()
    session.close()
    return product


def main() -> None:
    data = np.random.default_rng(7)  # test data only; masks come from the CSPRNG
    x_alice, y_bob = data.normal(size=(200, 50)), data.normal(size=(50, 30))
    roles = {"alice": compute_party, "bob": compute_party, "dealer": lambda party: run_dealer(party, PLAYERS)}
    inputs = {"alice": (x_alice,), "bob": (y_bob,)}
    start = time.perf_counter()
    outputs = run_local(roles, inputs)
    elapsed = time.perf_counter() - start
    error = np.max(np.abs(outputs["alice"] - x_alice @ y_bob))
    print(f"secret-shared (200x50) @ (50x30) in {elapsed * 1e3:.1f} ms; max |error| vs numpy = {error:.2e}")
    for pid, s in sorted(outputs.stats.items()):
        print(f"  {pid:>6}: sent {s.bytes_sent:>8} B, received {s.bytes_received:>8} B, rounds {s.rounds}")
    if error > 1e-3:
        raise SystemExit("result does not match numpy")


if __name__ == "__main__":
    main()
