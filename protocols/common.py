"""Input checks and communication reporting shared by every protocol and estimator.

Estimators follow scikit-learn: parameters in ``__init__``, ``fit`` returns ``self``, fitted
attributes end in ``_``. After ``fit`` each exposes ``communication_`` (a
:class:`CommunicationReport`) built from the run's ``party.stats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from mpcml.local import PartyFailed, RunOutputs, run_local
from mpcml.party import CommStats


@dataclass(frozen=True)
class CommunicationReport:
    """Bytes, messages and rounds of one protocol run, in total and per party."""

    per_party: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_stats(cls, stats: Mapping[str, CommStats]) -> "CommunicationReport":
        return cls({pid: s.as_dict() for pid, s in sorted(stats.items())})

    @property
    def total_bytes(self) -> int:
        """Bytes sent by all parties together (each byte counted once, at its sender)."""
        return sum(p["bytes_sent"] for p in self.per_party.values())

    @property
    def rounds(self) -> int:
        """Largest round count of any party (the critical path in rounds)."""
        return max((p["rounds"] for p in self.per_party.values()), default=0)

    def __str__(self) -> str:
        parts = ", ".join(f"{pid}: {p['bytes_sent']} B sent / {p['rounds']} rounds" for pid, p in self.per_party.items())
        return f"{self.total_bytes} bytes in total, {self.rounds} rounds ({parts})"


def logistic(z: np.ndarray) -> np.ndarray:
    """The exact logistic function ``1 / (1 + e^-z)``, computed stably for any ``z``."""
    return np.exp(-np.logaddexp(0.0, -z))


def magnitude_bits(values: Any) -> int:
    """``ceil(log2 max|v|)`` (-64 for an all-zero array): the public magnitude a party announces at set-up."""
    top = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return max(-64, math.ceil(math.log2(top))) if top > 0 else -64


def check_matrix(x: Any, name: str, *, allow_sparse: bool = False) -> np.ndarray | sp.csr_matrix:
    """A finite 2-D float matrix (or CSR matrix when ``allow_sparse``), or a clear error naming ``name``."""
    if sp.issparse(x):
        if not allow_sparse:
            raise TypeError(f"{name} must be a dense array; sparse input is not supported here")
        x = sp.csr_matrix(x, dtype=np.float64)
        if not np.all(np.isfinite(x.data)):
            raise ValueError(f"{name} contains NaN or inf")
        return x
    try:
        raw = np.asarray(x)
        if raw.dtype.kind == "c":
            raise ValueError(f"{name}: Complex data not supported")
        arr = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        if "Complex" in str(exc):
            raise
        raise TypeError(f"{name} must be a numeric 2-D array: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows x features), got shape {arr.shape}; Reshape your data "
                         "(X.reshape(-1, 1) for one feature, X.reshape(1, -1) for one row)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        what = "sample" if arr.shape[0] == 0 else "feature"
        raise ValueError(f"{name} is empty: 0 {what}(s) (shape={arr.shape}) while a minimum of 1 is required.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def check_vertical_parts(parts: Any, name: str = "X", *, allow_sparse: bool = False, min_parties: int = 2) -> list:
    """Per-party feature blocks of the same rows: a list of >= ``min_parties`` matrices with equal row counts."""
    if not isinstance(parts, (list, tuple)):
        raise TypeError(f"{name} must be a list with one feature block per party, got {type(parts).__name__}")
    if len(parts) < min_parties:
        raise ValueError(f"{name} must hold at least {min_parties} parties' blocks, got {len(parts)}")
    blocks = [check_matrix(p, f"{name}[{i}]", allow_sparse=allow_sparse) for i, p in enumerate(parts)]
    rows = [b.shape[0] for b in blocks]
    if len(set(rows)) != 1:
        raise ValueError(f"the parties' blocks in {name} must have the same number of rows (aligned samples), got {rows}")
    return blocks


def check_horizontal_parts(parts: Any, name: str = "X", *, min_parties: int = 2) -> list[np.ndarray]:
    """Per-holder row blocks of the same features: a list of >= ``min_parties`` matrices with equal column counts."""
    if not isinstance(parts, (list, tuple)):
        raise TypeError(f"{name} must be a list with one row block per holder, got {type(parts).__name__}")
    if len(parts) < min_parties:
        raise ValueError(f"{name} must hold at least {min_parties} holders' row blocks, got {len(parts)}")
    blocks = [check_matrix(p, f"{name}[{i}]") for i, p in enumerate(parts)]
    columns = [b.shape[1] for b in blocks]
    if len(set(columns)) != 1:
        raise ValueError(f"the holders' blocks in {name} must have the same number of columns, got {columns}")
    return blocks


def check_labels(y: Any, n_rows: int, *, binary: bool, name: str = "y", both_classes: bool = True) -> np.ndarray:
    """A finite 1-D label vector of ``n_rows`` entries; with ``binary`` only 0/1, both present unless
    ``both_classes`` is false (one horizontal holder may have a single class)."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the features have {n_rows} rows")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if binary:
        classes = np.unique(arr)
        if not np.all(np.isin(classes, (0.0, 1.0))):
            raise ValueError(f"{name} must contain only the labels 0 and 1, got {classes[:10].tolist()}")
        if both_classes and len(classes) < 2:
            raise ValueError(f"{name} contains a single class ({classes.tolist()}); need both 0 and 1")
    return arr


def check_horizontal_pairs(parts: Any, name: str = "X", *, binary: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(blocks, labels)`` of a horizontal partition given as ``(X_i, y_i)`` pairs, one per holder.

    Blocks as :func:`check_horizontal_parts`; each ``y_i`` as :func:`check_labels`; with ``binary``
    the labels are 0/1 and both classes occur among all holders' labels together (one holder
    may have a single class).
    """
    if not isinstance(parts, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in parts):
        raise TypeError(f"{name} must be a list of (X_i, y_i) pairs, one per holder")
    blocks = check_horizontal_parts([x for x, _ in parts], name)
    labels = [check_labels(y, b.shape[0], binary=False, name=f"y[{i}]") for i, (b, (_, y)) in enumerate(zip(blocks, parts))]
    if binary:
        together = np.concatenate(labels)
        check_labels(together, together.shape[0], binary=True, name="the labels y_i together")
    return blocks, labels


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer parameter in ``[low, high]`` (``>= low`` without ``high``; bools refused), or a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, *, positive: bool = True, high: float | None = None) -> float:
    """A finite real parameter, positive (or non-negative with ``positive=False``) and at most ``high`` if given.

    A non-number is a ``TypeError``, a number out of range a ``ValueError``; both name the parameter.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not (value > 0 if positive else value >= 0) or (high is not None and value > high):
        bounds = ("positive" if positive else "non-negative") if high is None else f"in {'(' if positive else '['}0, {high}]"
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return float(value)


def check_party_ids(ids: Sequence[str], name: str = "party ids") -> tuple[str, ...]:
    ids = tuple(ids)
    if len(set(ids)) != len(ids) or not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f"{name} must be distinct non-empty strings, got {list(ids)}")
    return ids


def run_parties(roles: Mapping[str, Callable[..., Any]], inputs: Mapping[str, Any], timeout: float) -> RunOutputs:
    """:func:`mpcml.run_local` for estimators: a party's ``ValueError``/``TypeError`` (bad input) or ``OverflowError`` (a run-time range guard) is re-raised as is."""
    try:
        return run_local(roles, inputs, timeout=timeout)
    except PartyFailed as exc:
        if isinstance(exc.__cause__, (ValueError, TypeError, OverflowError)):
            raise exc.__cause__ from None
        raise
