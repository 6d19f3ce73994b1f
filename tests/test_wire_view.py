"""Wire view: every array a player receives is uniformly distributed and independent of the secrets.

Both engines claim it for every message before an output is revealed (``"beaver"``: openings
masked by triples, truncation pairs and edaBits, the dealer's derived shares; ``"rss3"``:
re-shared terms masked by zero sharings, the helper's blinded terms and dealt shares, the
2-out-of-2 swaps, input terms; the bit-to-arithmetic step's 0/1 words are uniform bits). The
``wire_log`` fixture records each player's received messages while the players run a computation
on constant secrets (the worst case for a leak) and reveal nothing; every unsigned integer array
(uint64 ring words, and the uint16 masked table bits of the dealt comparison) of at least
``SIZE / 4`` elements is tested:

- words: no bit position of the word's width is biased (z-score < 5.5, as the share tests) and
  the top four bits pass a chi-square test against uniform (p > 1e-6); 0/1 arrays: the count of
  ones is balanced;
- the sum and XOR of consecutive same-shaped word arrays a player receives are uniform too
  (two messages masked with the same randomness would fail);
- the same message under two different secrets has the same distribution (chi-square
  homogeneity of the top four bits, or of the 0/1 counts; p > 1e-6).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as scistats

from mpcml import nonlinear as nl
from tests.conftest import players_of, run_players

SIZE = 4096
SECRETS = {"zero": (0.0, 0.0), "const": (12345.678, -3.25)}


def _arrays(obj):
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "u":
        yield obj
    elif isinstance(obj, list):
        for item in obj:
            yield from _arrays(item)


def _computation(s, x_value: float, y_value: float) -> None:
    """Inputs, products, truncation, matrix product, comparison (alone, with products and a truncation
    alongside), relu, sigmoid (also of an untruncated product), argmax, a fused double truncation; no output."""
    x = s.input(np.full(SIZE, x_value) if s.party.id == "p0" else None, "p0")
    y = s.input(np.full(SIZE, y_value) if s.party.id == "p1" else None, "p1")
    x * y, x * 0.75, x.reshape(64, 64) @ y.reshape(64, 64), x.ltz_bits(), (x - y).relu()
    x.ltz_select(lambda truncated: [truncated[0]], [(x * 3, 2)])
    x.sigmoid("linear"), nl.sigmoid(x.mul(y, trunc_bits=0), "linear", extra_bits=16)
    (x * 0.001).reshape(SIZE // 4, 4).argmax_bits(), s.from_additive(np.full(SIZE, 7, np.uint64))
    (x * (1 << 16)).truncate_update(y * 1000, 3, 10)


def _views(wire_log: list, start: int, players: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
    """The arrays (of at least ``SIZE / 4`` elements) each player received since ``wire_log[start]``."""
    views: dict[str, list[np.ndarray]] = {pid: [] for pid in players}
    for receiver, _, message in wire_log[start:]:
        if receiver in views:
            views[receiver].extend(a for a in _arrays(message) if a.size >= SIZE // 4)
    return views


def _is_bits(a: np.ndarray) -> bool:
    return bool(np.all(a <= 1))


def _word_z(a: np.ndarray) -> float:
    words = a.astype(np.uint64)
    ones = np.array([np.count_nonzero((words >> np.uint64(b)) & np.uint64(1)) for b in range(8 * a.itemsize)])
    return float(np.max(np.abs(ones - a.size / 2) / np.sqrt(a.size / 4)))


def _top_nibble(a: np.ndarray) -> np.ndarray:
    return np.bincount((a.ravel().astype(np.uint64) >> np.uint64(8 * a.itemsize - 4)).astype(np.int64), minlength=16)


def _assert_uniform(a: np.ndarray, what: str) -> None:
    if _is_bits(a):
        z = abs(np.count_nonzero(a) - a.size / 2) / np.sqrt(a.size / 4)
        assert z < 5.5, f"{what}: unbalanced bits (z = {z:.1f})"
        return
    assert _word_z(a) < 5.5, f"{what}: biased bit position (z = {_word_z(a):.1f})"
    assert scistats.chisquare(_top_nibble(a)).pvalue > 1e-6, f"{what}: top four bits not uniform"


def _same_distribution(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if _is_bits(a) and _is_bits(b):
        table = [[np.count_nonzero(a), a.size - np.count_nonzero(a)], [np.count_nonzero(b), b.size - np.count_nonzero(b)]]
    else:
        table = np.stack([_top_nibble(a), _top_nibble(b)])
    assert scistats.chi2_contingency(table)[1] > 1e-6, f"{what}: depends on the secret"


def test_every_received_array_is_uniform_and_secret_independent(engine, wire_log):
    views = {}
    for name, value in SECRETS.items():
        start = len(wire_log)
        run_players(3, lambda s, v=value: _computation(s, *v), engine=engine, timeout=120)
        views[name] = _views(wire_log, start, players_of(3))
    for pid in views["zero"]:
        runs = [views[name][pid] for name in SECRETS]
        assert len(runs[0]) == len(runs[1]), f"{pid}: the message sequence depends on the secret"
        # enough messages to matter: every step of the computation sends this player something
        assert len(runs[0]) >= 20, f"{pid} received only {len(runs[0])} arrays"
        for i, (a, b) in enumerate(zip(*runs)):
            what = f"{engine}: array {i} received by {pid}"
            _assert_uniform(a, what)
            _assert_uniform(b, what)
            _same_distribution(a, b, what)
        for run in runs:
            for i, (a, b) in enumerate(zip(run, run[1:])):
                if a.shape == b.shape and not _is_bits(a) and not _is_bits(b):
                    _assert_uniform(a + b, f"{engine}: sum of arrays {i}, {i + 1} received by {pid}")
                    _assert_uniform(a ^ b, f"{engine}: xor of arrays {i}, {i + 1} received by {pid}")


def test_values_opened_in_a_comparison_are_uniform_and_secret_independent(engine, monkeypatch):
    """What a player reconstructs in a comparison (its own share plus the others'), not just what it
    receives: ``c = x + r`` and the masked table bits ``d``, recorded where :mod:`mpcml.comparison`
    uses them, are uniform for constant secrets and distributed alike for two of them."""
    from mpcml import comparison

    opened: list = []
    original = comparison.msb

    def recording(c, d, *args, **kwargs):
        opened.append((c.copy(), d.copy()))
        return original(c, d, *args, **kwargs)

    monkeypatch.setattr(comparison, "msb", recording)
    seen = {}
    for name, (value, _) in SECRETS.items():
        opened.clear()
        run_players(3, lambda s, v=value: s.input(np.full(SIZE, v) if s.party.id == "p0" else None, "p0").ltz_bits(),
                    engine=engine, timeout=120)
        assert opened, "no comparison used the dealt tables"
        seen[name] = opened[0]
        for what, a in zip(("c", "masked table bits"), opened[0]):
            _assert_uniform(a, f"{engine}: opened {what} of the secret {name}")
    for i, what in enumerate(("c", "masked table bits")):
        _same_distribution(seen["zero"][i], seen["const"][i], f"{engine}: opened {what}")
