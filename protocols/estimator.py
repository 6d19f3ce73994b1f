"""The estimator contract every protocol follows: scikit-learn's, with the data split among parties.

Every estimator derives from :class:`SecureEstimator` and names its protocol's config
(:class:`protocols.config.ProtocolConfig`); its ``__init__`` is generated from the config's
options, so the defaults live in one place. Two input forms, one ``partition`` parameter:

- **a federation** (``partition="vertical"`` or ``"horizontal"``, the default for the protocol):
  ``fit([X_a, X_b, ...], y)`` with one column block per holder (vertical), or
  ``fit([(X_a, y_a), (X_b, y_b), ...])`` with one row block per holder (horizontal);
- **a simulation** (``partition=Vertical(15, 15)``, ``Horizontal(3)``, or a list of ints meaning
  the protocol's own kind): ``fit(X, y)`` with full matrices, split as described, so that
  ``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` work unchanged and every fold is a real
  secure fit. This mode is for evaluation by someone who may see all the data; a real federation
  uses the list form in-process or the party processes (:mod:`parties`).

``predict``/``decision_function``/``score`` accept a full matrix or the same list of blocks.
Classifiers accept any labels (numbers or strings; ``classes_`` sorted); with more than two
classes the logistic-type protocols fit one-vs-rest. ``feature_names_in_`` is kept from
DataFrames and checked at predict time. ``save(path)``/``load(path)`` use
:mod:`protocols.persistence` (never pickle). ``verbose`` follows :mod:`protocols.progress`.
After ``fit``: ``communication_`` (bytes and rounds from ``party.stats``).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.validation import check_is_fitted

from mpcml.party import DEFAULT_TIMEOUT

from .common import (
    CommunicationReport,
    check_horizontal_parts,
    check_labels,
    check_matrix,
    check_vertical_parts,
    logistic,
    run_parties,
)
from .config import ProtocolConfig
from .persistence import load_model, save_model
from .progress import Progress


class Vertical:
    """Simulation layout: the columns of a full ``X`` go to the holders in order, ``widths[i]`` to holder ``i``."""

    kind = "vertical"

    def __init__(self, *widths: int | Sequence[int]) -> None:
        flat = tuple(widths[0]) if len(widths) == 1 and isinstance(widths[0], (list, tuple)) else widths
        if len(flat) < 2 or not all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w > 0 for w in flat):
            raise ValueError(f"Vertical needs at least two positive column counts, got {list(flat)}")
        self.widths = tuple(int(w) for w in flat)

    def split(self, X: Any) -> list:
        if X.shape[1] != sum(self.widths):
            raise ValueError(f"partition {self!r} splits {sum(self.widths)} columns but X has {X.shape[1]}")
        stops = np.cumsum(self.widths)
        return [X[:, stop - w: stop] for w, stop in zip(self.widths, stops)]

    def to_json(self) -> dict:
        return {"vertical": list(self.widths)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vertical) and other.widths == self.widths

    def __repr__(self) -> str:
        return f"Vertical{self.widths}"


class Horizontal:
    """Simulation layout: the rows of a full ``X`` go to ``n_holders`` holders in contiguous near-equal groups."""

    kind = "horizontal"

    def __init__(self, n_holders: int = 2) -> None:
        if isinstance(n_holders, bool) or not isinstance(n_holders, (int, np.integer)) or n_holders < 2:
            raise ValueError(f"Horizontal needs n_holders >= 2, got {n_holders!r}")
        self.n_holders = int(n_holders)

    def split(self, X: Any) -> list:
        if X.shape[0] < self.n_holders:
            raise ValueError(f"partition {self!r} needs at least {self.n_holders} rows: n_samples = {X.shape[0]}")
        return [X[rows] for rows in np.array_split(np.arange(X.shape[0]), self.n_holders)]

    def to_json(self) -> dict:
        return {"horizontal": self.n_holders}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Horizontal) and other.n_holders == self.n_holders

    def __repr__(self) -> str:
        return f"Horizontal({self.n_holders})"


def _layout_from_json(value: Any) -> Any:
    if isinstance(value, dict) and list(value) == ["vertical"]:
        return Vertical(*value["vertical"])
    if isinstance(value, dict) and list(value) == ["horizontal"]:
        return Horizontal(value["horizontal"])
    return value


def _feature_names(X: Any) -> np.ndarray | None:
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "iloc"):
        return None
    names = [str(c) for c in columns]
    return np.asarray(names, dtype=object) if all(isinstance(c, str) for c in columns) else None


def encode_classes(y: Any, n_rows: int | None = None, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """``(classes, codes)``: the sorted distinct labels (numbers or strings) and each label's index.

    A ``ValueError`` naming ``name`` unless there are at least two classes, no missing values and
    (given ``n_rows``) one label per row.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "fc" and np.all(np.isfinite(arr)) and np.any(arr != np.round(arr)):
        raise ValueError(f"Unknown label type: continuous. {name} holds non-integer numbers; a classifier needs "
                         "class labels (integers or strings)")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the features have {n_rows} rows")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if arr.dtype.kind == "O" and any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in arr):
        raise ValueError(f"{name} contains missing values")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError:
        raise TypeError(f"{name} mixes label types that cannot be sorted (e.g. numbers and strings)") from None
    if len(classes) < 2:
        raise ValueError(f"{name} contains a single class ({classes.tolist()}); a classifier needs at least two")
    return classes, codes.astype(np.int64)


@dataclass
class FitData:
    """The training data as the parties hold it, after the checks and label encoding.

    ``blocks``: one matrix per holder. ``y``: vertical, the label vector (one entry per row);
    horizontal, one vector per holder. For classifiers the labels are class indices
    ``0..K-1`` (see :meth:`SecureEstimator.targets`).
    """

    kind: str
    blocks: list
    y: Any


ESTIMATORS: dict[str, type] = {}
"""Every public estimator class by name (filled as they are defined): how a model file names its class."""


def load_estimator(path: Any) -> "SecureEstimator":
    """A fitted estimator of whichever class wrote ``path`` (see :meth:`SecureEstimator.save`)."""
    kind = load_model(path).kind
    if kind not in ESTIMATORS:
        raise ValueError(f"{str(path)!r} holds a {kind!r} model, which is not an mpcml estimator "
                         f"(known: {', '.join(sorted(ESTIMATORS))})")
    return ESTIMATORS[kind].load(path)


class SecureEstimator(BaseEstimator):
    """Base of every mpcml estimator; see the module docstring.

    Subclasses set ``config_class`` and, where they apply, ``partitions`` (the kinds they
    support, the first being the default), ``fixed_params`` (config fields the estimator fixes,
    e.g. the loss), ``extra_params`` (estimator-only parameters and their defaults) and
    ``saved_attributes`` (the fitted attributes that make up the model).
    """

    config_class: ClassVar[type[ProtocolConfig]]
    partitions: ClassVar[tuple[str, ...]] = ("vertical",)
    fixed_params: ClassVar[Mapping[str, Any]] = {}
    extra_params: ClassVar[Mapping[str, Any]] = {}
    saved_attributes: ClassVar[tuple[str, ...]] = ()
    allow_sparse: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__ and hasattr(cls, "config_class"):
            cls.__init__ = _generated_init(cls)
        if not cls.__name__.startswith("_"):
            ESTIMATORS[cls.__name__] = cls

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Every ``__init__`` parameter and its default: the config's options, then the estimator's own."""
        options = {k: v for k, v in cls.config_class.defaults().items() if k not in cls.fixed_params}
        own = {"partition": cls.partitions[0]} if "partition" not in options else {}
        return {**options, **own, **cls.extra_params, "timeout": DEFAULT_TIMEOUT, "verbose": 0}

    # --- configuration ---------------------------------------------------------------------------

    def _layout(self) -> tuple[str, Vertical | Horizontal | None]:
        """``(kind, layout)``: the partition kind and, in simulation mode, how to split full matrices."""
        p = self.partition
        if isinstance(p, str):
            if p not in self.partitions:
                raise ValueError(f"partition must be one of {list(self.partitions)} or a layout such as "
                                 f"{'Vertical(15, 15)' if 'vertical' in self.partitions else 'Horizontal(3)'}, got {p!r}")
            return p, None
        if isinstance(p, (list, tuple)):
            p = Vertical(*p) if self.partitions[0] == "vertical" else Horizontal(len(p))
        if not isinstance(p, (Vertical, Horizontal)) or p.kind not in self.partitions:
            raise ValueError(f"partition must be one of {list(self.partitions)} or a Vertical/Horizontal layout "
                             f"of a supported kind, got {p!r}")
        return p.kind, p

    def make_config(self, **topology: Any) -> Any:
        """The protocol config from this estimator's parameters plus ``topology`` (party ids and the like)."""
        names = [n for n in self.config_class.option_names() if n not in self.fixed_params]
        values = {name: getattr(self, name) for name in names}
        if "partition" in values:
            values["partition"] = self._layout()[0]
        return self.config_class(**values, **self.fixed_params, **topology)

    def progress(self, total: int, unit: str) -> Progress:
        return Progress(total, unit, verbose=self.verbose, name=type(self).__name__)

    def run(self, roles: Mapping[str, Callable[..., Any]], inputs: Mapping[str, Any]) -> Any:
        """Run every party in this process; records ``communication_``; bad input re-raised as is."""
        out = run_parties(roles, inputs, self.timeout)
        self.communication_ = CommunicationReport.from_stats(out.stats)
        return out

    # --- data in ---------------------------------------------------------------------------------

    def fit_data(self, X: Any, y: Any, *, labels: bool = True) -> FitData:
        """Check and split the training data; records ``n_features_in_``, ``feature_names_in_``,
        ``block_widths_`` (vertical) and, for classifiers, ``classes_``."""
        kind, layout = self._layout()
        sparse = self.allow_sparse
        if labels and y is not None and not isinstance(y, (list, tuple)):
            y = np.asarray(y)
        if labels and isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1] == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected; it is used as y.ravel()",
                          DataConversionWarning, stacklevel=2)
            y = np.ravel(y)
        if layout is not None:
            names = _feature_names(X)
            X = check_matrix(X, "X", allow_sparse=sparse)
            if labels and y is None:
                raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
            if labels and np.shape(np.asarray(y))[:1] != (X.shape[0],):
                raise ValueError(f"X has {X.shape[0]} samples but y has {np.shape(np.asarray(y))[:1]}: the number of "
                                 "samples must match")
            blocks = layout.split(X)
            if kind == "vertical":
                ys = y
            else:
                rows = np.array_split(np.arange(X.shape[0]), layout.n_holders)
                ys = None if y is None else [np.asarray(y)[r] for r in rows]
        elif kind == "vertical":
            block_names = [_feature_names(b) for b in X] if isinstance(X, (list, tuple)) else []
            names = np.concatenate(block_names) if block_names and all(n is not None for n in block_names) else None
            blocks = check_vertical_parts(X, "X", allow_sparse=sparse)
            ys = y
        elif not labels:
            if not isinstance(X, (list, tuple)):
                raise TypeError(f"X must be a list with one row block per holder (or set partition=Horizontal(k) "
                                f"to split a full matrix), got {type(X).__name__}")
            names = _feature_names(X[0]) if X else None
            blocks = check_horizontal_parts(X, "X")
            ys = None
        else:
            if y is not None:
                raise ValueError('with partition="horizontal" pass X as a list of (X_i, y_i) pairs and y=None '
                                 "(or a Horizontal(k) partition with full X and y)")
            if not isinstance(X, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in X):
                raise TypeError("X must be a list of (X_i, y_i) pairs, one per holder")
            names = _feature_names(X[0][0])
            blocks = check_horizontal_parts([p[0] for p in X], "X")
            ys = [p[1] for p in X]
        self.n_features_in_ = int(sum(b.shape[1] for b in blocks)) if kind == "vertical" else int(blocks[0].shape[1])
        if names is not None and len(names) == self.n_features_in_:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.block_widths_ = [int(b.shape[1]) for b in blocks] if kind == "vertical" else None
        return FitData(kind, blocks, self._checked_targets(kind, blocks, ys) if labels else None)

    def _checked_targets(self, kind: str, blocks: list, ys: Any) -> Any:
        if kind == "vertical":
            return self.targets(ys, blocks[0].shape[0], "y")
        sizes = [b.shape[0] for b in blocks]
        for i, (yi, n) in enumerate(zip(ys, sizes)):
            if np.asarray(yi).shape[:1] != (n,):
                raise ValueError(f"y[{i}] has {np.asarray(yi).shape[:1]} entries but X[{i}] has {n} rows")
        together = self.targets(np.concatenate([np.asarray(yi).ravel() for yi in ys]), sum(sizes), "the labels y_i together")
        return np.split(together, np.cumsum(sizes)[:-1])

    def targets(self, y: Any, n_rows: int, name: str) -> np.ndarray:
        """Regressors: finite real targets. Classifiers override: class indices, ``classes_`` set."""
        return check_labels(y, n_rows, binary=False, name=name)

    # --- data out --------------------------------------------------------------------------------

    def features(self, X: Any) -> Any:
        """A full matrix in the fitted column order, from a full matrix or the fit's list of blocks."""
        check_is_fitted(self, "n_features_in_")
        names = _feature_names(X)
        if isinstance(X, (list, tuple)) and X and all(np.ndim(b) == 2 or sp.issparse(b) for b in X):  # blocks, not rows
            kind = self._layout()[0]
            parts = check_vertical_parts(X, "X", allow_sparse=self.allow_sparse, min_parties=1) if kind == "vertical" else \
                [check_matrix(b, f"X[{i}]", allow_sparse=self.allow_sparse) for i, b in enumerate(X)]
            block_names = [_feature_names(b) for b in X]
            if kind == "vertical" and all(n is not None for n in block_names):
                names = np.concatenate(block_names)
            stack = (sp.hstack if kind == "vertical" else sp.vstack) if any(sp.issparse(b) for b in parts) else \
                (np.hstack if kind == "vertical" else np.vstack)
            X = stack(parts).tocsr() if stack in (sp.hstack, sp.vstack) else stack(parts)
        else:
            X = check_matrix(X, "X", allow_sparse=self.allow_sparse)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} "
                             "features as input")
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and names is not None and not np.array_equal(names, fitted):
            raise ValueError("the feature names of X differ from those seen at fit (reordered or renamed columns); "
                             f"expected {list(fitted)[:10]}, got {list(names)[:10]}")
        return X

    def feature_blocks(self, X: Any) -> list:
        """Vertical models: the per-holder column blocks of ``X`` (split by the fitted widths)."""
        full = self.features(X)
        return Vertical(*self.block_widths_).split(full) if len(self.block_widths_) > 1 else [full]

    # --- persistence -----------------------------------------------------------------------------

    def save(self, path: Any) -> Any:
        """Write the fitted model to ``path`` (see :mod:`protocols.persistence`); returns the path."""
        check_is_fitted(self, "n_features_in_")
        arrays, attributes = {}, {}
        for name in ("n_features_in_", "feature_names_in_", "block_widths_", "classes_", *self.saved_attributes):
            if not hasattr(self, name):
                continue
            value = getattr(self, name)
            if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
                arrays[name] = value
            elif isinstance(value, np.ndarray):
                attributes[name] = {"strings": [str(v) for v in value]}
            else:
                attributes[name] = value.item() if isinstance(value, np.generic) else value
        params = {k: (v.to_json() if isinstance(v, (Vertical, Horizontal)) else v) for k, v in self.get_params().items()}
        return save_model(path, type(self).__name__, params, attributes, arrays)

    @classmethod
    def load(cls, path: Any) -> Any:
        """A fitted estimator read from a file written by :meth:`save` (of this class)."""
        saved = load_model(path, cls.__name__)
        unknown = set(saved.params) - set(cls.param_defaults())
        if unknown:
            raise ValueError(f"{str(path)!r} has parameters {sorted(unknown)} that {cls.__name__} does not take")
        model = cls(**{k: _layout_from_json(v) for k, v in saved.params.items()})
        for name, value in saved.attributes.items():
            if isinstance(value, dict) and "strings" in value:  # string labels or feature names
                value = np.asarray(value["strings"], dtype=object if name == "feature_names_in_" else None)
            setattr(model, name, value)
        for name, value in saved.arrays.items():
            setattr(model, name, value)
        return model


def _generated_init(cls: type) -> Callable[..., None]:
    defaults = cls.param_defaults()

    def __init__(self: Any, **params: Any) -> None:
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected parameters {unknown}; valid: {sorted(defaults)}")
        for name, default in defaults.items():
            setattr(self, name, params.get(name, default))

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = inspect.Signature(
        [self_param, *(inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in defaults.items())]
    )
    __init__.__doc__ = f"Parameters (defaults in {cls.config_class.__name__}): " + ", ".join(defaults)
    return __init__


class LinearModel:
    """Scores of a revealed linear model: ``coef_`` ``(d,)`` with a float ``intercept_`` for regressors,
    ``(1, d)``/``(K, d)`` with ``(1,)``/``(K,)`` for classifiers. Protocols whose model stays
    shared override :meth:`scores` with a secure prediction."""

    def scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = self.features(X)
        scores = np.asarray(X @ np.asarray(self.coef_).T) + self.intercept_
        return scores.ravel() if scores.ndim == 2 and scores.shape[1] == 1 else scores


class LinearRegressorMixin(LinearModel):
    def predict(self, X: Any) -> np.ndarray:
        return self.scores(X)


class LinearClassifierMixin(LinearModel):
    """Labels, one-vs-rest probabilities (normalised as scikit-learn's ``OneVsRestClassifier``) and predictions."""

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores ``X @ coef_.T + intercept_``: ``(n,)`` for two classes, ``(n, K)`` for K > 2."""
        return self.scores(X)

    def targets(self, y: Any, n_rows: int, name: str) -> np.ndarray:
        self.classes_, codes = encode_classes(y, n_rows, name)
        return codes

    @property
    def n_outputs(self) -> int:
        """The number of binary models: 1 for two classes, K for K > 2 (one-vs-rest)."""
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def one_vs_rest(self, codes: np.ndarray) -> np.ndarray:
        """Binary 0/1 targets: a vector for two classes, an ``(n, K)`` matrix for K > 2."""
        codes = np.asarray(codes)
        if self.n_outputs == 1:
            return (codes == 1).astype(np.float64)
        return (codes[:, None] == np.arange(self.n_outputs)[None, :]).astype(np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = logistic(scores)
            return np.column_stack([1.0 - p, p])
        p = logistic(scores)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        index = (scores > 0).astype(np.int64) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes_[index]
