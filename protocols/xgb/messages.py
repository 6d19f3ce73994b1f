"""The messages of SecureBoost (:mod:`protocols.xgb.he`): one type per message, with ``to_wire``/``from_wire``.

Each type declares its wire shape once (``SCHEMA``, checked by :meth:`mpcml.party.Party.recv` /
:meth:`~mpcml.party.Party.gather` at the receiver, which name the sender and the field of a
mismatch) and :meth:`from_wire` checks what a shape cannot (ranges, lengths, ciphertexts below
the key's modulus) with a ``ValueError`` naming the message. :func:`receive` and :func:`gather` do both.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

from mpcml.he import PublicKey, public_key_from_wire
from mpcml.party import Party
from mpcml.schema import Anything, Array, Int, ListOf, Record, Str, Tuple


class _Message:
    """A message type: ``SCHEMA`` (checked at the receiver), ``WHAT`` (its name in errors), ``to_wire``
    (its fields as a dict, by default) and ``from_wire`` (each type's own checks)."""

    def to_wire(self) -> dict[str, Any]:
        return {f.name: _listed(getattr(self, f.name)) for f in fields(self)}


def _listed(value: Any) -> Any:
    """Tuples inside lists as lists (the schemas' ``Tuple`` matches a list)."""
    return [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, list) else value


@dataclass(frozen=True)
class KeyMessage(_Message):
    """Label holder -> passive parties, once: the public key (of the scheme the receiver expects)."""

    public_key: PublicKey
    SCHEMA = Record(key=Anything())
    WHAT = "public key"

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.public_key.to_wire()}

    @classmethod
    def from_wire(cls, obj: dict[str, Any], scheme: str) -> "KeyMessage":
        return cls(public_key_from_wire(obj["key"], scheme))


@dataclass(frozen=True)
class GradientsMessage(_Message):
    """Label holder -> passive parties, per tree: the sampled rows (sorted) and one ciphertext per
    row of ``g 2^W + h`` (quantised), whose sums fit ``slot_bits``-bit slots."""

    rows: np.ndarray
    ciphertexts: list[int]
    slot_bits: int
    SCHEMA = Record(rows=Array(np.int64, ndim=1), ciphertexts=ListOf(Int(low=1)), slot_bits=Int(8, 16_384))
    WHAT = "encrypted gradients"

    @classmethod
    def from_wire(cls, obj: dict[str, Any], public_key: PublicKey, n_rows: int) -> "GradientsMessage":
        rows, cts = obj["rows"], obj["ciphertexts"]
        if rows.size == 0 or rows[0] < 0 or rows[-1] >= n_rows or np.any(np.diff(rows) <= 0):
            raise ValueError(f"the {cls.WHAT} name rows that are not sorted distinct indices in [0, {n_rows})")
        if len(cts) != rows.size or max(cts) >= public_key.modulus:
            raise ValueError(f"the {cls.WHAT} need one ciphertext below the key's modulus per sampled row ({rows.size})")
        if obj["slot_bits"] > public_key.plaintext_bits:
            raise ValueError(f"the {cls.WHAT} declare {obj['slot_bits']}-bit slots, wider than the key's plaintexts")
        return cls(rows, cts, obj["slot_bits"])


@dataclass(frozen=True)
class NodesMessage(_Message):
    """Label holder -> passive parties, per level: the node (heap index) of every row."""

    nodes: np.ndarray
    SCHEMA = Record(nodes=Array(np.int64, ndim=1))
    WHAT = "node assignment"

    @classmethod
    def from_wire(cls, obj: dict[str, Any], n_rows: int, depth: int) -> "NodesMessage":
        nodes = obj["nodes"]
        if nodes.shape != (n_rows,) or nodes.min() < 2**depth - 1 or nodes.max() >= 2 ** (depth + 1) - 1:
            raise ValueError(f"the {cls.WHAT} must give each of the {n_rows} rows a node of level {depth}")
        return cls(nodes)


@dataclass(frozen=True)
class HistogramsMessage(_Message):
    """Passive party -> label holder, per level: per node of the level, its packed, re-randomised left
    sums (empty for a node whose sums the label holder derives or that holds no sampled row)."""

    words: list[list[int]]
    SCHEMA = Record(words=ListOf(ListOf(Int(low=1))))
    WHAT = "histograms"

    @classmethod
    def from_wire(cls, obj: dict[str, Any], public_key: PublicKey, n_nodes: int) -> "HistogramsMessage":
        """The number of words per node is checked by the receiver, which knows the sender's candidate count."""
        words = obj["words"]
        if len(words) != n_nodes:
            raise ValueError(f"the {cls.WHAT} must hold {n_nodes} nodes, got {len(words)}")
        if any(c >= public_key.modulus for w in words for c in w):
            raise ValueError(f"the {cls.WHAT} hold a ciphertext beyond the key's modulus")
        return cls(words)


@dataclass(frozen=True)
class WinnersMessage(_Message):
    """Label holder -> a passive party, per level: ``(node, shuffled candidate index)`` of every node it won."""

    won: list[tuple[int, int]]
    SCHEMA = Record(won=ListOf(Tuple(Int(low=0), Int(low=0))))
    WHAT = "winning splits"

    @classmethod
    def from_wire(cls, obj: dict[str, Any], nodes: Sequence[int], n_candidates: int) -> "WinnersMessage":
        won = [(int(v), int(k)) for v, k in obj["won"]]
        if any(v not in nodes or k >= n_candidates for v, k in won) or len({v for v, _ in won}) != len(won):
            raise ValueError(f"the {cls.WHAT} name a node outside the level or a candidate beyond {n_candidates}")
        return cls(won)


@dataclass(frozen=True)
class SplitsMessage(_Message):
    """A passive party -> label holder, per level: for each node it won, which of the node's rows go left."""

    left: list[tuple[int, np.ndarray]]
    SCHEMA = Record(left=ListOf(Tuple(Int(low=0), Array(np.uint8, ndim=1))))
    WHAT = "split rows"

    @classmethod
    def from_wire(cls, obj: dict[str, Any], expected: dict[int, int]) -> "SplitsMessage":
        """``expected``: node -> its number of rows, for the nodes the receiver asked about."""
        left = [(int(v), rows) for v, rows in obj["left"]]
        if sorted(v for v, _ in left) != sorted(expected) or any(rows.size != expected[v] for v, rows in left):
            raise ValueError(f"the {cls.WHAT} must answer for the nodes {sorted(expected)} with one flag per row")
        return cls(left)


DONE = Str(("done",))


def _built(sender: str, kind: type, obj: Any, context: tuple) -> Any:
    try:
        return kind.from_wire(obj, *context)
    except ValueError as exc:
        raise ValueError(f"party {sender!r} sent malformed {kind.WHAT}: {exc}") from None


def receive(party: Party, frm: str, kind: type, *context: Any) -> Any:
    """The next message from ``frm``, checked against ``kind.SCHEMA`` and built by ``kind.from_wire``."""
    return _built(frm, kind, party.recv(frm, expect=kind.SCHEMA, what=kind.WHAT), context)


def gather(party: Party, senders: Sequence[str], kind: type, *context: Any) -> dict[str, Any]:
    """One ``kind`` message from each of ``senders`` (waiting on all at once), checked as by :func:`receive`."""
    return {pid: _built(pid, kind, obj, context)
            for pid, obj in party.gather(senders, expect=kind.SCHEMA, what=kind.WHAT).items()}
