"""Declared message shapes: what a protocol expects from a peer, checked at the receiver.

A protocol declares the shape of each message it receives once, next to the code that sends it::

    SHAPE = Record(rows=Int(low=1), cols=Int(low=1))
    shape = party.recv(holder, expect=SHAPE, what="block shape")

and :meth:`mpcml.party.Party.recv` / :meth:`~mpcml.party.Party.gather` raise
:class:`ProtocolError` naming the sender, the message and the offending field when a message
does not match. Values are those :mod:`mpcml.codec` decodes (tuples arrive as lists).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


class ProtocolError(ValueError):
    """A peer sent a message that does not have the declared shape."""

    def __init__(self, sender: str, what: str, problem: str) -> None:
        self.sender, self.what, self.problem = sender, what, problem
        super().__init__(f"party {sender!r} sent a malformed {what}: {problem}")


class Mismatch(Exception):
    """Raised by :meth:`Spec.check` with the path of the field that does not match."""

    def __init__(self, path: str, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path or 'the message'} {problem}")


class Spec:
    """One declared shape. ``check(value)`` returns the value (normalised) or raises :class:`Mismatch`."""

    def check(self, value: Any, path: str = "") -> Any:
        raise NotImplementedError

    def validate(self, value: Any, sender: str, what: str) -> Any:
        """``check`` with the mismatch turned into a :class:`ProtocolError` naming ``sender``."""
        try:
            return self.check(value)
        except Mismatch as exc:
            raise ProtocolError(sender, what, str(exc)) from None


def _kind(value: Any) -> str:
    return type(value).__name__


class Anything(Spec):
    def check(self, value: Any, path: str = "") -> Any:
        return value


class Nothing(Spec):
    """``None``."""

    def check(self, value: Any, path: str = "") -> Any:
        if value is not None:
            raise Mismatch(path, f"must be None, got {_kind(value)}")
        return None


class Bool(Spec):
    def check(self, value: Any, path: str = "") -> bool:
        if not isinstance(value, bool):
            raise Mismatch(path, f"must be a bool, got {_kind(value)}")
        return value


class Int(Spec):
    """A Python int (bools refused) in ``[low, high]``."""

    def __init__(self, low: int | None = None, high: int | None = None) -> None:
        self.low, self.high = low, high

    def check(self, value: Any, path: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Mismatch(path, f"must be an integer, got {_kind(value)}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise Mismatch(path, f"must lie in [{self.low}, {self.high}], got {value}")
        return value


class Float(Spec):
    """A finite real number (an int is accepted and returned as float)."""

    def check(self, value: Any, path: str = "") -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Mismatch(path, f"must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise Mismatch(path, f"must be finite, got {value}")
        return float(value)


class Bytes(Spec):
    def __init__(self, length: int | None = None) -> None:
        self.length = length

    def check(self, value: Any, path: str = "") -> bytes:
        if not isinstance(value, bytes):
            raise Mismatch(path, f"must be bytes, got {_kind(value)}")
        if self.length is not None and len(value) != self.length:
            raise Mismatch(path, f"must be {self.length} bytes, got {len(value)}")
        return value


class Str(Spec):
    def __init__(self, choices: Sequence[str] | None = None) -> None:
        self.choices = None if choices is None else tuple(choices)

    def check(self, value: Any, path: str = "") -> str:
        if not isinstance(value, str):
            raise Mismatch(path, f"must be a string, got {_kind(value)}")
        if self.choices is not None and value not in self.choices:
            raise Mismatch(path, f"must be one of {list(self.choices)}, got {value!r}")
        return value


class Array(Spec):
    """A numpy array of ``dtype`` (one dtype or a tuple of them), ``ndim`` and ``shape``.

    ``shape`` entries that are ``None`` match any length.
    """

    def __init__(self, dtype: Any = None, *, ndim: int | Sequence[int] | None = None,
                 shape: Sequence[int | None] | None = None) -> None:
        self.dtypes = None if dtype is None else tuple(np.dtype(d) for d in (dtype if isinstance(dtype, tuple) else (dtype,)))
        self.ndims = None if ndim is None else ((ndim,) if isinstance(ndim, int) else tuple(ndim))
        self.shape = None if shape is None else tuple(shape)

    def check(self, value: Any, path: str = "") -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise Mismatch(path, f"must be an array, got {_kind(value)}")
        if self.dtypes is not None and value.dtype not in self.dtypes:
            raise Mismatch(path, f"must have dtype {' or '.join(str(d) for d in self.dtypes)}, got {value.dtype}")
        if self.ndims is not None and value.ndim not in self.ndims:
            raise Mismatch(path, f"must have {' or '.join(map(str, self.ndims))} dimensions, got shape {value.shape}")
        if self.shape is not None and (
            value.ndim != len(self.shape) or any(w is not None and w != v for w, v in zip(self.shape, value.shape))
        ):
            raise Mismatch(path, f"must have shape {self.shape}, got {value.shape}")
        return value


class ListOf(Spec):
    """A list whose items all match ``item``; exactly ``length`` of them if given."""

    def __init__(self, item: Spec, length: int | None = None) -> None:
        self.item, self.length = item, length

    def check(self, value: Any, path: str = "") -> list:
        if not isinstance(value, list):
            raise Mismatch(path, f"must be a list, got {_kind(value)}")
        if self.length is not None and len(value) != self.length:
            raise Mismatch(path, f"must have {self.length} items, got {len(value)}")
        return [self.item.check(v, f"{path}[{i}]") for i, v in enumerate(value)]


class Tuple(Spec):
    """A list (tuples travel as lists) with one item per spec, in order."""

    def __init__(self, *items: Spec) -> None:
        self.items = items

    def check(self, value: Any, path: str = "") -> list:
        if not isinstance(value, list):
            raise Mismatch(path, f"must be a list, got {_kind(value)}")
        if len(value) != len(self.items):
            raise Mismatch(path, f"must have {len(self.items)} items, got {len(value)}")
        return [spec.check(v, f"{path}[{i}]") for i, (spec, v) in enumerate(zip(self.items, value))]


class Record(Spec):
    """A dict with exactly the keys given (plus any of ``optional``), each value matching its spec."""

    def __init__(self, optional: dict[str, Spec] | None = None, **fields: Spec) -> None:
        self.fields, self.optional = fields, dict(optional or {})

    def check(self, value: Any, path: str = "") -> dict:
        if not isinstance(value, dict):
            raise Mismatch(path, f"must be a dict, got {_kind(value)}")
        missing = [k for k in self.fields if k not in value]
        extra = [k for k in value if k not in self.fields and k not in self.optional]
        if missing or extra:
            problem = "; ".join(p for p in (f"lacks {missing}" if missing else "", f"has unexpected {extra}" if extra else "") if p)
            raise Mismatch(path, problem)
        specs = {**self.fields, **self.optional}
        return {k: specs[k].check(v, f"{path}.{k}" if path else k) for k, v in value.items()}


class OneOf(Spec):
    """The first of several specs that matches."""

    def __init__(self, *options: Spec) -> None:
        self.options = options

    def check(self, value: Any, path: str = "") -> Any:
        problems = []
        for spec in self.options:
            try:
                return spec.check(value, path)
            except Mismatch as exc:
                problems.append(exc.problem)
        raise Mismatch(path, " or ".join(problems))
