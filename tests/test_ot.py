"""Random OT extension: the receiver gets exactly the chosen message, never the other one, both ways."""

from __future__ import annotations

import numpy as np
import pytest

from mpcml import run_local
from mpcml.ot import KAPPA, OTExtension, tccr_hash

COUNTS = (1000, 13, 0, 4096)


def role(party, peer):
    ot = OTExtension(lambda obj: party.send(peer, obj), lambda: party.recv(peer), party.rng)
    return [ot.extend(count, words=2 if count == 13 else 1) for count in COUNTS]


@pytest.fixture(scope="module")
def outputs():
    return run_local({"alice": role, "bob": role}, {"alice": ("bob",), "bob": ("alice",)})


@pytest.mark.parametrize("sender, receiver", [("alice", "bob"), ("bob", "alice")])
def test_receiver_gets_the_chosen_message_only(outputs, sender, receiver):
    for k, count in enumerate(COUNTS):
        x0, x1, _, _ = outputs[sender][k]
        _, _, choices, chosen = outputs[receiver][k]
        assert x0.shape == x1.shape == chosen.shape == (count, 16 * (2 if count == 13 else 1))
        assert choices.shape == (count,) and set(np.unique(choices)) <= {0, 1}
        np.testing.assert_array_equal(chosen, np.where(choices[:, None] == 1, x1, x0))
        other = np.where(choices[:, None] == 1, x0, x1)
        assert not (other == chosen).all(axis=1).any()


def test_outputs_are_fresh_and_choices_balanced(outputs):
    x0, x1, choices, _ = outputs["alice"][3][0], outputs["alice"][3][1], outputs["bob"][3][2], None
    rows = {bytes(r) for r in np.concatenate([x0, x1, outputs["alice"][0][0]])}
    assert len(rows) == 2 * 4096 + 1000  # no repeated message across OTs or calls
    assert 4096 * 0.45 < int(choices.sum()) < 4096 * 0.55  # 6.4 standard deviations either side


def test_hash_is_tweaked_by_index():
    rows = np.zeros((3, 16), dtype=np.uint8)
    out = tccr_hash(rows, 7)
    assert len({bytes(r) for r in out}) == 3
    np.testing.assert_array_equal(out[1:], tccr_hash(rows[1:], 8))


def test_malformed_messages_are_refused():
    def bad_peer(party):
        party.recv("alice")
        party.send("alice", {"S": b"\x02" + bytes(32)})

    def alice(party):
        with pytest.raises(ValueError):
            OTExtension(lambda obj: party.send("bob", obj), lambda: party.recv("bob"), party.rng)
        return KAPPA

    assert run_local({"alice": alice, "bob": bad_peer})["alice"] == KAPPA
