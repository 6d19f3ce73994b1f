"""The app registry: how a protocol becomes runnable as ``mpcml demo`` and ``mpcml party``.

An *app* is one module ``parties/apps/<name>.py``; ``<name>`` is what users type
(``mpcml demo <name>``, ``mpcml party --protocol <name>``). Modules whose name starts with ``_``
are not apps. An app module defines exactly these seven names:

``DESCRIPTION: str``
    One line shown by ``mpcml demo --list``.

``CONFIG`` and ``DEMO``: :class:`protocols.config.ProtocolConfig` subclasses
    ``CONFIG`` is the protocol's config (its options are the ``--option`` keys, with the same
    defaults as the estimator); ``DEMO`` declares the options that only shape the demo data
    (e.g. ``rows``). An option that is in neither is refused, listing the valid ones, before
    anything runs (:func:`effective_options`); ``mpcml options NAME`` prints both tables.

``DEMO_PARTIES: dict[str, str]``
    The demo federation: party id -> role name, e.g. ``{"alice": "left", "bob": "right",
    "dealer": "dealer"}``. Several parties may share a role (``"client"``). Party ids are lower
    case letters, digits and ``-`` (they become certificate names, see :mod:`parties.config`).
    In a real federation the ids and the role of each party come from the federation file,
    so role functions must find their peers through :class:`AppContext` (``ctx.party_for``),
    never by hard-coded ids.

``demo_data(out_dir: Path, seed: int, options: Mapping[str, str]) -> dict[str, Path]``
    Writes each data-holding demo party's private input as a CSV file under ``out_dir`` (from a
    scikit-learn data set or generated with ``numpy.random.default_rng(seed)``; test data only)
    and returns ``{party_id: path}``. Parties without data are left out.

``build(ctx: AppContext) -> tuple[Callable, tuple | dict]``
    Returns this party's role function and its inputs, ``(role, args)`` with ``args`` a tuple of
    positional or a dict of keyword arguments, exactly what :func:`mpcml.run_local` takes; the
    role is then called as ``role(party, *args)``. ``build`` reads ``ctx.data`` (CSV, see
    :func:`read_csv`) and ``ctx.options``, and raises ``ValueError`` naming the option or file
    on bad input, before any message is sent. It must not communicate.

``check(outputs: Mapping[str, Any], data: Mapping[str, Path], options: Mapping[str, str]) -> CheckResult``
    Given every party's output and the demo data, recomputes the result in plaintext
    (numpy / scikit-learn / xgboost) and returns :class:`CheckResult`: ``ok`` (within the
    tolerance that the fixed-point precision explains) and a one-line ``summary`` such as
    ``"max |error| vs numpy = 3.1e-06 (bound 2.4e-04)"``.

Role outputs travel back to the launcher through :mod:`mpcml.codec`, so they must be
codec-encodable (numpy arrays, numbers, str, bytes, lists/tuples/dicts of those).

Optionally ``model(output, ctx) -> SecureEstimator | None``: the fitted estimator a party's
output amounts to (``None`` where the party learns no model it can use alone). ``mpcml party
--model PATH`` saves it (:mod:`protocols.persistence`) and ``mpcml predict`` uses it.

Options are strings given as ``--option key=value`` on the command line (the same options
reach ``demo_data``, every party's ``build`` and ``check``); turn them into the config with
:meth:`AppContext.config` (or :func:`parse` where there is no context), which parses each by its
field's type and gives a clear error naming the option.

:func:`run_app_local` runs an app's demo federation in one process (``mpcml.run_local``); the
process launcher (:mod:`parties.launcher`) runs the very same ``build`` output over gRPC, so
outputs and ``party.stats`` agree between the two. See ``parties/apps/matmul.py`` for a
complete example and docs/parties.md for the walk-through.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from mpcml.local import RunOutputs, run_local
from mpcml.party import DEFAULT_TIMEOUT
from protocols.config import ProtocolConfig
from protocols.progress import Progress

REQUIRED = ("DESCRIPTION", "DEMO_PARTIES", "CONFIG", "DEMO", "demo_data", "build", "check")
TRANSITIONAL = ("CONFIG", "DEMO")  # apps not yet converted to a ProtocolConfig parse options with get_option
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

T = TypeVar("T")
C = TypeVar("C", bound=ProtocolConfig)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of comparing a run with the plaintext reference."""

    ok: bool
    summary: str


@dataclass(frozen=True)
class AppContext:
    """What :func:`build` knows about this party: its id and role, the federation, its data, options and verbosity."""

    party_id: str
    role: str
    federation: Mapping[str, str]
    data: Path | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    app: ModuleType | None = None
    verbose: int = 0

    def config(self, **topology: Any) -> Any:
        """The app's ``CONFIG`` from the options and ``topology`` (party ids and the like)."""
        return parse(self.options, self.app.CONFIG, self.app.DEMO, **topology)

    def progress(self, total: int, unit: str) -> Progress:
        """The per-step progress of this party (lines at ``--verbose``)."""
        return Progress(total, unit, verbose=self.verbose, name=self.party_id)

    def option(self, name: str, kind: Callable[[str], T], default: T) -> T:
        return get_option(self.options, name, kind, default)

    def parties_for(self, role: str) -> tuple[str, ...]:
        """Ids of all parties with ``role``, sorted."""
        return tuple(sorted(pid for pid, r in self.federation.items() if r == role))

    def party_for(self, role: str) -> str:
        """The one party with ``role``; ``ValueError`` unless exactly one has it."""
        found = self.parties_for(role)
        if len(found) != 1:
            raise ValueError(f"the federation must have exactly one party with role {role!r}, found {list(found)}")
        return found[0]

    def require_data(self) -> Path:
        if self.data is None:
            raise ValueError(f"party {self.party_id!r} (role {self.role!r}) needs a data file (--data)")
        return self.data


def get_option(options: Mapping[str, str], name: str, kind: Callable[[str], T], default: T) -> T:
    """Transitional (apps without ``CONFIG``): ``kind(options[name])``, or ``default`` if absent."""
    if name not in options:
        return default
    try:
        return kind(options[name])
    except (TypeError, ValueError):
        raise ValueError(f"option {name!r} must be {getattr(kind, '__name__', kind)}, got {options[name]!r}") from None


def get_flag(options: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Transitional (apps without ``CONFIG``): an on/off option given as 0 or 1."""
    value = get_option(options, name, int, int(default))
    if value not in (0, 1):
        raise ValueError(f"option {name!r} must be 0 or 1, got {value}")
    return bool(value)


def parse(options: Mapping[str, str], config: type[C], other: type[ProtocolConfig] | None = None, **topology: Any) -> C:
    """``config`` from ``--option`` strings; keys of ``other`` (the app's other table) are allowed and ignored."""
    return config.from_options(options, extra=other.option_names() if other else (), **topology)


def effective_options(app: ModuleType, options: Mapping[str, str]) -> dict[str, Any]:
    """Every option of ``app`` with the value in effect (given or default); an unknown key is a ``ValueError``."""
    if not hasattr(app, "CONFIG"):  # transitional: an app not yet converted knows its options only in build
        return dict(options)
    given = {**app.CONFIG.parse_options(options, extra=app.DEMO.option_names()),
             **app.DEMO.parse_options(options, extra=app.CONFIG.option_names())}
    return {**app.CONFIG.defaults(), **app.DEMO.defaults(), **given}


def read_csv(path: Path | str) -> np.ndarray:
    """A 2-D float array from a comma-separated file; a first line that is not numeric is a header and skipped."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as handle:
            first = handle.readline()
    except OSError as exc:
        raise ValueError(f"cannot read data file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        [float(cell) for cell in first.strip().split(",")]
        skip = 0
    except ValueError:
        skip = 1
    try:
        return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"data file {str(path)!r} is not a numeric CSV: {exc}") from None


def write_csv(path: Path | str, array: np.ndarray, header: list[str] | None = None) -> Path:
    """Write a 1-D or 2-D array as CSV (full float precision); returns the path."""
    path = Path(path)
    arr = np.asarray(array, dtype=np.float64)
    np.savetxt(path, arr[:, None] if arr.ndim == 1 else arr, delimiter=",", fmt="%.17g",
               header=",".join(header) if header else "", comments="")
    return path


def demo_generator(seed: int) -> np.random.Generator:
    """numpy's generator for *demo data only* (reproducible from ``seed``); masks, shares and keys
    come from :class:`mpcml.csprng.Csprng` inside the protocols, never from here."""
    return np.random.default_rng(seed)


def shuffled_row_groups(n_rows: int, n_groups: int, seed: int) -> list[np.ndarray]:
    """Demo data: the rows ``range(n_rows)`` shuffled (reproducibly) and split into ``n_groups`` near-equal groups."""
    return np.array_split(demo_generator(seed).permutation(n_rows), n_groups)


def available_apps() -> list[str]:
    """Names of all app modules under ``parties/apps``."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load_app(name: str) -> ModuleType:
    """The app module ``parties.apps.<name>``, checked for the five required names."""
    if not isinstance(name, str) or not _NAME.match(name) or name not in available_apps():
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(available_apps())}")
    module = importlib.import_module(f"{__name__}.{name}")
    missing = [attr for attr in REQUIRED if not hasattr(module, attr) and attr not in TRANSITIONAL]
    if missing:
        raise ValueError(f"app module parties.apps.{name} lacks {', '.join(missing)}")
    return module


def build_role(
    app: ModuleType,
    party_id: str,
    federation: Mapping[str, str],
    data: Path | None,
    options: Mapping[str, str],
    verbose: int = 0,
) -> tuple[Callable[..., Any], tuple | dict]:
    """Call ``app.build`` for one party of ``federation`` (party id -> role), after checking the option keys."""
    if party_id not in federation:
        raise ValueError(f"party {party_id!r} is not in the federation {sorted(federation)}")
    effective_options(app, options)
    ctx = AppContext(party_id, federation[party_id], dict(federation), None if data is None else Path(data),
                     dict(options), app, verbose)
    role, args = app.build(ctx)
    if not callable(role) or not isinstance(args, (tuple, dict)):
        raise TypeError(f"{app.__name__}.build must return (callable, tuple | dict)")
    return role, args


def party_model(app: ModuleType, output: Any, party_id: str, federation: Mapping[str, str],
                options: Mapping[str, str]) -> Any:
    """The fitted estimator a party's ``output`` amounts to, or ``None`` (see the module docstring)."""
    if not hasattr(app, "model"):
        return None
    ctx = AppContext(party_id, federation[party_id], dict(federation), None, dict(options), app)
    return app.model(output, ctx)


def run_app_local(
    name: str,
    data: Mapping[str, Path],
    options: Mapping[str, str] | None = None,
    *,
    federation: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> RunOutputs:
    """Run app ``name`` with one thread per party (default federation: ``DEMO_PARTIES``)."""
    app = load_app(name)
    federation = dict(federation or app.DEMO_PARTIES)
    options = dict(options or {})
    built = {pid: build_role(app, pid, federation, data.get(pid), options) for pid in federation}
    return run_local({pid: b[0] for pid, b in built.items()}, {pid: b[1] for pid, b in built.items()}, timeout=timeout)
