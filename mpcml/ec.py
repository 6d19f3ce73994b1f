"""The secp256k1 elliptic-curve group for functional encryption, on libsecp256k1 (``coincurve``).

secp256k1 (SEC 2, v2) has prime order ``q`` (256 bits) and cofactor 1, so every point is in the
group: discrete log and DDH at ~128-bit security with 33-byte elements (compressed points),
against 384 bytes in :data:`mpcml.dlog.GROUP_3072`. It implements :class:`mpcml.dlog.Group`,
written multiplicatively like the FE schemes: the group operation is point addition,
``pow(a, e)`` is ``e·a`` and ``gpow(e)`` is ``e·G``.

Arithmetic is libsecp256k1's (native, constant time for secret scalars): ``e·G`` through its
precomputed-table ``ecmult_gen`` (``PublicKey.from_valid_secret``), ``e·a`` through
``ecmult_const`` (``PublicKey.multiply``), sums of many points in one call (``combine_keys``).

The identity (point at infinity) is not representable as a ``coincurve.PublicKey``, so it is
``None`` here and every operation handles it: ``g^0`` for a zero inner product, a point plus
its negation, ``pow(a, 0)``. On the wire an element is its 33-byte compressed encoding and the
identity is 33 zero bytes (never a valid compressed point); received points are validated by
libsecp256k1 (on the curve; cofactor 1, so in the group).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from coincurve import PublicKey

from .dlog import Group

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_BYTES = 33
_IDENTITY_WIRE = bytes(POINT_BYTES)
_SMALL_LIMIT = 1 << 32

Point = PublicKey | None


def _sum(points: Sequence[PublicKey]) -> Point:
    """The sum of at least two points in one libsecp256k1 call; ``None`` if it is the point at infinity."""
    try:
        return PublicKey.combine_keys(points)
    except ValueError:  # libsecp256k1 refuses a sum that is the point at infinity
        return None


@dataclass(frozen=True)
class ECGroup(Group):
    """secp256k1 as a :class:`~mpcml.dlog.Group`; elements are ``coincurve.PublicKey`` or ``None`` (identity)."""

    name: str = "secp256k1"
    q: int = SECP256K1_ORDER
    secure: bool = True
    dlog_max_table: int = 1 << 18
    symmetric_keys = True

    @property
    def element_bytes(self) -> int:
        return POINT_BYTES

    @property
    def identity(self) -> Point:
        return None

    def gpow(self, e: int) -> Point:
        e = int(e) % self.q
        return PublicKey.from_valid_secret(e.to_bytes(32, "big")) if e else None

    def gpow_small(self, e: int) -> Point:
        """``e·G`` for ``|e| < 2^32`` as one sum of at most four points from 8-bit window tables of
        ``±G`` (~3x cheaper than ``ecmult_gen``; like :class:`mpcml.dlog.FixedBase`, the table index
        depends on ``e``, so this is not constant time); other ``e`` through :meth:`gpow`."""
        e = int(e)
        if not -_SMALL_LIMIT < e < _SMALL_LIMIT:
            return self.gpow(e)
        rows = _small_tables(self)[e < 0]
        e = abs(e)
        points = []
        for row in rows:
            if e & 255:
                points.append(row[e & 255])
            e >>= 8
        return self.prod(points)

    def pow(self, a: Point, e: int) -> Point:
        e = int(e) % self.q
        if a is None or not e:
            return None
        return a if e == 1 else a.multiply(e.to_bytes(32, "big"))

    def op(self, a: Point, b: Point) -> Point:
        if a is None or b is None:
            return b if a is None else a
        return _sum((a, b))

    def prod(self, elems: Sequence[Point]) -> Point:
        points = [a for a in elems if a is not None]
        if len(points) < 2:
            return points[0] if points else None
        return _sum(points)

    def inv(self, a: Point) -> Point:
        if a is None:
            return None
        raw = a.format(compressed=True)
        return PublicKey(bytes((raw[0] ^ 1,)) + raw[1:])

    def multi_exp(self, bases: Sequence[Point], exps: Sequence[int]) -> Point:
        """Points sharing an exponent are summed first, so unit weights cost one ``combine_keys``."""
        by_exp: dict[int, list[PublicKey]] = defaultdict(list)
        for a, e in zip(bases, exps, strict=True):
            if e and a is not None:
                by_exp[int(e)].append(a)
        return self.prod([self.pow(self.prod(points), e) for e, points in by_exp.items()])

    def element_to_wire(self, a: Point) -> bytes:
        return _IDENTITY_WIRE if a is None else a.format(compressed=True)

    def element_from_wire(self, obj: Any, name: str) -> Point:
        if not isinstance(obj, bytes) or len(obj) != POINT_BYTES:
            raise ValueError(f"{name} is not an element of group {self.name!r} (expected {POINT_BYTES} bytes)")
        if obj == _IDENTITY_WIRE:
            return None
        try:
            return PublicKey(obj)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name} is not an element of group {self.name!r} (not a curve point)") from exc

    def elements_to_wire(self, elems: Sequence[Point]) -> bytes:
        return b"".join(self.element_to_wire(a) for a in elems)

    def elements_from_wire(self, obj: Any, name: str) -> list[Point]:
        if not isinstance(obj, bytes) or len(obj) % POINT_BYTES:
            raise ValueError(f"{name}: expected concatenated {POINT_BYTES}-byte elements of group {self.name!r}")
        return [self.element_from_wire(obj[k : k + POINT_BYTES], name) for k in range(0, len(obj), POINT_BYTES)]

    def dlog_key(self, a: Point) -> tuple[bytes, int]:
        """128 bits of the x-coordinate (shared by ``a`` and ``-a``) and the sign from the y parity."""
        if a is None:
            return b"", 1
        raw = a.format(compressed=True)
        return raw[1:17], 1 if raw[0] == 2 else -1


@lru_cache(maxsize=2)
def _small_tables(group: ECGroup) -> tuple[list[list[Point]], list[list[Point]]]:
    """``(+rows, -rows)`` with ``rows[i][d] = ±(d · 256^i)·G`` for four 8-bit windows (built once: 2,040 points)."""
    return tuple(
        [[group.gpow(sign * (d << (8 * i))) for d in range(256)] for i in range(_SMALL_LIMIT.bit_length() // 8)]
        for sign in (1, -1)
    )


SECP256K1 = ECGroup()
