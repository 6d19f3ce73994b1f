"""``SharedTensor``: secret-shared fixed-point arrays and the arithmetic on them, on either engine.

A :class:`~mpcml.session.Session` binds one party to the group of compute parties (``players``), a
secret-sharing *engine* (:mod:`mpcml.engine`) and a fixed-point precision. A
:class:`SharedTensor` holds this party's raw share of a real array encoded with
``session.frac_bits`` fractional bits (see :mod:`mpcml.fixedpoint`), or of a ring integer array
(bits, indices: the ``*_ring``/``*_bits`` methods). Every compute party runs the same sequence
of operations on its own share (SPMD); the same protocol code runs on both engines:

- ``"beaver"`` (default; :mod:`mpcml.beaver`): additive shares among ``k >= 2`` players,
  correlated randomness from a :class:`~mpcml.triples.TripleSource` (a dealer that must not
  collude with any player, or Paillier triples for two players). ``Session(party, players,
  DealerTriples(...))``.
- ``"rss3"`` (:mod:`mpcml.rss3`): replicated sharing among exactly three players with an honest
  majority (no dealer; any single player learns nothing, two together learn everything).
  ``Session(party, players, engine="rss3")``.

:func:`~mpcml.session.make_session` builds either. Costs (rounds between players; see the engines for bytes):

============================================  ======  ======  ========================================
operation                                     beaver  rss3    notes
============================================  ======  ======  ========================================
``+``, ``-``, ``* int``, indexing, reshaping  0       0       local
``* public float``, ``@ public``, ``/ public``  1       2       local product, then truncation
``x * y``, ``x @ y`` (shared)                 2       2       product, then truncation
``x.mul(y, trunc_bits=0)``                    1       1       exact ring product (bits, integers)
``g.truncate_update(w, k, bits)``             1       2       ``(w - (g >> f) k) >> bits``, both truncations
comparison (``<``, ``ltz_bits``)              3       4       exact on the whole ring (8 on beaver without a dealer)
``x.ltz_select(values, truncate)``            3       4       bits, ``bits * v`` and truncations alongside
``reveal()``, ``reveal(to=pid)``              1       1
============================================  ======  ======  ========================================

Truncation is exact up to one unit ``2^-frac_bits`` with no failure probability while the value
is below ``2^62`` in the ring, on both engines.

Comparisons (``<``, ``>``, ``<=``, ``>=``), ``relu``, ``sign``, ``argmax``/``max``, ``reciprocal``,
``sqrt``, ``sigmoid`` and ``x / y`` for shared ``y`` are in :mod:`mpcml.nonlinear`.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import fixedpoint
from .engine import check_trunc_bits
from .ring import ring_matmul
from .triples import matmul_shape

if TYPE_CHECKING:
    from .session import Session


def _ring(values: Any) -> np.ndarray:
    """Ring integers (any integer dtype, negative values wrap) as uint64."""
    arr = np.asarray(values)
    if arr.dtype == np.uint64:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise TypeError(f"ring values must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64).view(np.uint64)


def _is_int_like(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.integer)


def _shared(x: Any, name: str, session: Session) -> "SharedTensor":
    if not isinstance(x, SharedTensor):
        raise TypeError(f"{name} must be a SharedTensor, got {type(x).__name__}")
    if x.session is not session:
        raise ValueError(f"{name} belongs to a different session")
    return x


def _normalise_axis(axis: Any, ndim: int) -> int:
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis!r} is out of range for {ndim} dimensions")
    return int(axis) % ndim


def _per_component(index: tuple) -> bool:
    """Whether prefixing ``index`` with the component axis would move numpy's advanced-index axes:
    several advanced indices (arrays, or arrays with integers) may be separated by slices."""
    arrays = sum(isinstance(i, (np.ndarray, list)) for i in index)
    integers = sum(isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)) for i in index)
    return arrays >= 1 and arrays + integers >= 2


class SharedTensor:
    """This party's share of a secret array (fixed-point, or ring integers for the ``*_ring``/``*_bits`` methods).

    ``share`` is the engine's raw share (``"beaver"``: the value's shape; ``"rss3"``:
    ``(2, *shape)``). Every method here is engine-agnostic.
    """

    __array_priority__ = 100  # so numpy defers `ndarray @ SharedTensor` to __rmatmul__

    def __init__(self, session: Session, share: np.ndarray) -> None:
        self.session = session
        self.share = session.engine.check_share(share)

    # --- shape --------------------------------------------------------------------------

    @property
    def _lead(self) -> int:
        return self.session.engine.lead

    @property
    def shape(self) -> tuple[int, ...]:
        return self.share.shape[self._lead :]

    @property
    def ndim(self) -> int:
        return self.share.ndim - self._lead

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d SharedTensor")
        return self.shape[0]

    def __iter__(self) -> Iterator["SharedTensor"]:
        return (self[i] for i in range(len(self)))

    def _new(self, share: np.ndarray) -> "SharedTensor":
        return SharedTensor(self.session, share)

    def _lifted(self, ndim: int) -> np.ndarray:
        """The raw share with singleton value axes in front, so it has ``ndim`` value axes."""
        missing = ndim - self.ndim
        if missing <= 0:
            return self.share
        lead = self.share.shape[: self._lead]
        return self.share.reshape(lead + (1,) * missing + self.shape)

    def _value_axis(self, axis: Any, ndim: int | None = None) -> int:
        return _normalise_axis(axis, self.ndim if ndim is None else ndim) + self._lead

    @property
    def T(self) -> "SharedTensor":
        return self.transpose()

    def transpose(self, *axes: Any) -> "SharedTensor":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        order = tuple(range(self.ndim))[::-1] if not axes else axes
        if sorted(_normalise_axis(a, self.ndim) for a in order) != list(range(self.ndim)):
            raise ValueError(f"axes {axes} do not permute the {self.ndim} axes")
        lead = tuple(range(self._lead))
        return self._new(self.share.transpose(lead + tuple(self._value_axis(a) for a in order)))

    def moveaxis(self, source: int, destination: int) -> "SharedTensor":
        return self._new(np.moveaxis(self.share, self._value_axis(source), self._value_axis(destination)))

    def reshape(self, *shape: Any) -> "SharedTensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return self._new(self.share.reshape(self.share.shape[: self._lead] + tuple(shape)))

    def flatten(self) -> "SharedTensor":
        return self.reshape(-1)

    def __getitem__(self, index: Any) -> "SharedTensor":
        if not self._lead:
            return self._new(self.share[index])
        index = index if isinstance(index, tuple) else (index,)
        if _per_component(index):
            return self._new(np.stack([component[index] for component in self.share]))
        return self._new(self.share[(slice(None),) * self._lead + index])

    def broadcast_to(self, shape: Sequence[int]) -> "SharedTensor":
        """A (read-only) view broadcast to ``shape``, as :func:`numpy.broadcast_to`."""
        shape = tuple(shape)
        return self._new(np.broadcast_to(self._lifted(len(shape)), self.share.shape[: self._lead] + shape))

    def repeat(self, repeats: Any, axis: int) -> "SharedTensor":
        return self._new(np.repeat(self.share, repeats, axis=self._value_axis(axis)))

    def tile(self, reps: Sequence[int]) -> "SharedTensor":
        reps = tuple(reps)
        return self._new(np.tile(self._lifted(len(reps)), (1,) * self._lead + (1,) * (self.ndim - len(reps)) + reps))

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "SharedTensor":
        if axis is None:
            axes = tuple(range(self._lead, self.share.ndim))
        else:
            axes = tuple(self._value_axis(a) for a in (axis if isinstance(axis, tuple) else (axis,)))
        return self._new(self.share.sum(axis=axes, keepdims=keepdims, dtype=np.uint64))

    @staticmethod
    def concatenate(tensors: Sequence["SharedTensor"], axis: int = 0) -> "SharedTensor":
        if not tensors:
            raise ValueError("need at least one tensor to concatenate")
        first = tensors[0]
        return first._new(np.concatenate([t.share for t in tensors], axis=first._value_axis(axis)))

    @staticmethod
    def stack(tensors: Sequence["SharedTensor"], axis: int = 0) -> "SharedTensor":
        if not tensors:
            raise ValueError("need at least one tensor to stack")
        first = tensors[0]
        return first._new(np.stack([t.share for t in tensors], axis=first._value_axis(axis, first.ndim + 1)))

    def tensordot_public(self, weights: ArrayLike) -> "SharedTensor":
        """``sum_t weights[t, ...] * self[t]``: :func:`numpy.tensordot` of public ring integers
        ``weights`` (first axis) with this tensor's first axis; exact in the ring, local."""
        weights = _ring(weights)
        if weights.ndim < 1 or not self.shape or weights.shape[0] != self.shape[0]:
            raise ValueError(f"weights of shape {weights.shape} do not match a first axis of length {self.shape[:1]}")
        product = np.tensordot(weights, self.share, axes=(0, self._lead)).astype(np.uint64, copy=False)
        return self._new(np.moveaxis(product, list(range(weights.ndim - 1)), list(range(self._lead, self._lead + weights.ndim - 1))))

    # --- linear operations ----------------------------------------------------------------

    def _encode_public(self, value: ArrayLike, name: str = "public operand") -> np.ndarray:
        return fixedpoint.encode(value, self.session.frac_bits, name=name)

    def _pair(self, other: "SharedTensor") -> tuple[np.ndarray, np.ndarray]:
        """Both raw shares with aligned value axes (for numpy broadcasting)."""
        _shared(other, "operand", self.session)
        ndim = max(self.ndim, other.ndim)
        np.broadcast_shapes(self.shape, other.shape)
        return self._lifted(ndim), other._lifted(ndim)

    def add_ring(self, values: ArrayLike) -> "SharedTensor":
        """Shares of ``secret + values`` for public ring integers (no fixed-point encoding)."""
        values = _ring(values)
        return self._new(self.session.engine.add_public(self._lifted(values.ndim), values))

    def __add__(self, other: Any) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            a, b = self._pair(other)
            return self._new(a + b)
        encoded = self._encode_public(other)
        return self._new(self.session.engine.add_public(self._lifted(encoded.ndim), encoded))

    __radd__ = __add__

    def __neg__(self) -> "SharedTensor":
        return self._new(np.uint64(0) - self.share)

    def __sub__(self, other: Any) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            a, b = self._pair(other)
            return self._new(a - b)
        return self + (-np.asarray(other, dtype=np.float64))

    def __rsub__(self, other: Any) -> "SharedTensor":
        return (-self) + other

    def not_bits(self) -> "SharedTensor":
        """Shares of ``1 - b`` for shared integer bits ``b`` (local)."""
        return (-self).add_ring(1)

    # --- products ----------------------------------------------------------------------

    def mul(self, other: "SharedTensor", trunc_bits: int | None = None) -> "SharedTensor":
        """Elementwise product with a shared tensor (broadcast), truncated by ``trunc_bits``.

        ``None``: ``frac_bits`` (two fixed-point values); 0: the exact ring product (a value times
        an integer bit, two integers). 1 round plus the truncation's.
        """
        bits = check_trunc_bits(self.session.frac_bits if trunc_bits is None else trunc_bits)
        a, b = self._pair(other)
        shape = np.broadcast_shapes(self.shape, other.shape)
        lead = self.share.shape[: self._lead]
        a, b = np.broadcast_to(a, lead + shape), np.broadcast_to(b, lead + shape)
        return self._new(self.session.engine.mul(a, b, bits))

    def mul_public(self, value: ArrayLike, *, name: str = "public operand") -> "SharedTensor":
        """Product with a public real array (encoded with ``frac_bits``), then truncated."""
        encoded = self._encode_public(value, name)
        return self._new(self.session.engine.truncate(self._lifted(encoded.ndim) * encoded, self.session.frac_bits))

    def truncate(self, bits: int | None = None) -> "SharedTensor":
        """Shares of ``x >> bits`` (default ``frac_bits``), up to one unit; e.g. after integer scalings
        ``w * k1 - g * k2`` with public integers carrying ``bits`` fractional bits."""
        bits = check_trunc_bits(self.session.frac_bits if bits is None else bits)
        return self._new(self.session.engine.truncate(self.share, bits))

    def truncate_update(self, base: "SharedTensor", factor: ArrayLike, out_bits: int, bits: int | None = None
                        ) -> "SharedTensor":
        """``(base - self.truncate(bits) * factor).truncate(out_bits)`` for public integers ``factor``
        (broadcast to this shape; e.g. a gradient at ``2 frac_bits`` folded into a weight update), with
        both truncations in the rounds of one (each up to one unit): 1 round on ``"beaver"``, 2 on ``"rss3"``."""
        bits = check_trunc_bits(self.session.frac_bits if bits is None else bits)
        out_bits = check_trunc_bits(out_bits)
        base = _shared(base, "base", self.session)
        if base.shape != self.shape:
            raise ValueError(f"base has shape {base.shape}, expected {self.shape}")
        factor = _ring(factor)
        np.broadcast_shapes(factor.shape, self.shape)
        return self._new(self.session.engine.truncate_update(self.share, bits, base.share, factor, out_bits))

    def __mul__(self, other: Any) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            return self.mul(other)
        if _is_int_like(other):
            factor = np.asarray(other).astype(np.int64).view(np.uint64)
            return self._new(self._lifted(factor.ndim) * factor)
        return self.mul_public(other)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            return nonlinear.divide(self, other)
        divisor = np.asarray(other, dtype=np.float64)
        if np.any(divisor == 0):
            raise ZeroDivisionError("division of a SharedTensor by a public zero")
        return self * (1.0 / divisor)

    def matmul(self, other: "SharedTensor", trunc_bits: int | None = None) -> "SharedTensor":
        """``self @ other`` for shared 1-D/2-D tensors, truncated by ``trunc_bits`` (default ``frac_bits``)."""
        bits = check_trunc_bits(self.session.frac_bits if trunc_bits is None else trunc_bits)
        _shared(other, "operand", self.session)
        matmul_shape(self.shape, other.shape)
        return self._new(self.session.engine.matmul(self.share, other.share, bits))

    def __matmul__(self, other: Any) -> "SharedTensor":
        if isinstance(other, SharedTensor):
            return self.matmul(other)
        matmul_shape(self.shape, np.shape(other))
        product = ring_matmul(self.share, self._encode_public(other))
        return self._new(self.session.engine.truncate(product, self.session.frac_bits))

    def __rmatmul__(self, other: Any) -> "SharedTensor":
        matmul_shape(np.shape(other), self.shape)
        encoded = self._encode_public(other)
        if self._lead:
            # per component: (E @ S)^T = S^T @ E^T, with S^T transposing the value axes only
            flipped = np.swapaxes(self.share, -1, -2) if self.ndim == 2 else self.share
            product = ring_matmul(flipped, encoded.T)
            product = np.swapaxes(product, -1, -2) if product.ndim == self._lead + 2 else product
        else:
            product = ring_matmul(encoded, self.share)
        return self._new(self.session.engine.truncate(product, self.session.frac_bits))

    def square(self) -> "SharedTensor":
        return self * self

    # --- non-linear operations (see mpcml.nonlinear) ---------------------------------------

    def ltz_bits(self) -> "SharedTensor":
        """Shares of the integer bits ``[x < 0]`` (x as a signed ring element); exact."""
        bits, _, _ = self.session.engine.ltz(self.share)
        return self._new(bits)

    def ltz_select(
        self,
        values: Sequence["SharedTensor"] | Callable[[list["SharedTensor"]], Sequence["SharedTensor"]] = (),
        truncate: Sequence[tuple["SharedTensor", int]] = (),
    ) -> tuple["SharedTensor", list["SharedTensor"], list["SharedTensor"]]:
        """``(bits, products, truncated)`` in the rounds of one comparison: the integer bits ``[x < 0]``
        (exact), the exact ring products ``bits * v`` for each of ``values`` (value shape ``x.shape``
        plus trailing axes, over which the bit is broadcast) and ``t.truncate(bits)`` for each
        ``(t, bits)`` of ``truncate``. ``values`` may be a function of the truncated tensors, evaluated
        locally between the rounds (e.g. a line through a truncated product, selected by the bits)."""
        engine = self.session.engine
        pairs = [(_shared(t, "truncate", self.session).share, check_trunc_bits(b)) for t, b in truncate]

        def check(v: Any) -> np.ndarray:
            v = _shared(v, "values", self.session)
            if v.shape[: self.ndim] != self.shape:
                raise ValueError(f"a value of shape {v.shape} does not extend the compared shape {self.shape}")
            return v.share

        if callable(values):
            times: Any = lambda truncated: [check(v) for v in values([self._new(t) for t in truncated])]  # noqa: E731
        else:
            times = [check(v) for v in values]
        bits, products, truncated = engine.ltz(self.share, times, pairs)
        return self._new(bits), [self._new(p) for p in products], [self._new(t) for t in truncated]

    def __lt__(self, other: Any) -> "SharedTensor":
        return nonlinear.lt(self, other)

    def __gt__(self, other: Any) -> "SharedTensor":
        return nonlinear.gt(self, other)

    def __le__(self, other: Any) -> "SharedTensor":
        return nonlinear.le(self, other)

    def __ge__(self, other: Any) -> "SharedTensor":
        return nonlinear.ge(self, other)

    def relu(self) -> "SharedTensor":
        return nonlinear.relu(self)

    def sign(self) -> "SharedTensor":
        return nonlinear.sign(self)

    def sigmoid(self, method: str = "sqrt") -> "SharedTensor":
        return nonlinear.sigmoid(self, method)

    def argmax(self, axis: int = -1) -> "SharedTensor":
        """Shared one-hot of the maximum along ``axis`` (ties: lowest index)."""
        return nonlinear.argmax(self, axis)

    def argmax_bits(self) -> "SharedTensor":
        """Integer 0/1 shares of the one-hot argmax along the last axis (see :func:`mpcml.nonlinear.argmax_bits`)."""
        return nonlinear.argmax_bits_of(self)

    def max(self, axis: int = -1) -> "SharedTensor":
        return nonlinear.max(self, axis)

    def reciprocal(self, **kwargs: Any) -> "SharedTensor":
        """``1/x``; keyword arguments ``lo``, ``hi``, ``iterations`` as in :func:`mpcml.nonlinear.reciprocal`."""
        return nonlinear.reciprocal(self, **kwargs)

    def sqrt(self, **kwargs: Any) -> "SharedTensor":
        return nonlinear.sqrt(self, **kwargs)

    # --- output ----------------------------------------------------------------------

    def reveal_ring(self, to: str | None = None) -> np.ndarray | None:
        """The plaintext ring values (uint64) at every player (``to=None``) or at player ``to`` only."""
        if to is None:
            (total,) = self.session.engine.open([self.share])
            return total
        return self.session.engine.open_to(self.share, to)

    def reveal(self, to: str | None = None) -> np.ndarray | None:
        """The plaintext float array at every player (``to=None``) or at player ``to`` only."""
        total = self.reveal_ring(to)
        return None if total is None else fixedpoint.decode(total, self.session.frac_bits)

    def reveal_outside(self, to: str) -> None:
        """Send this player's term of the value to ``to``, a party that is not a player and
        runs :func:`receive_revealed`."""
        if to in self.session.players:
            raise ValueError(f"{to!r} is a player: use reveal(to=...)")
        self.session.party.check_peer(to, "recipient")
        self.session.party.send(to, np.ascontiguousarray(self.session.engine.additive_part(self.share)))

    def __repr__(self) -> str:
        return f"SharedTensor(shape={self.shape}, party={self.session.party.id!r}, engine={self.session.engine.name!r})"


from . import nonlinear  # noqa: E402 - nonlinear builds on the classes above
