"""One config per protocol: the only place its public parameters, defaults and checks live.

A protocol's config is a frozen dataclass deriving from :class:`ProtocolConfig`. Each public
parameter is declared once with :func:`option` (default, one line of help, check); the fields
without ``option`` (party ids and other topology, filled in by whoever deploys the protocol)
are not user options. From that single declaration:

- the estimator's ``__init__`` takes exactly the options, with these defaults
  (:mod:`protocols.estimator`);
- the party app parses ``--option key=value`` with :meth:`ProtocolConfig.from_options`, by the
  field's type, and refuses an unknown or misspelt key listing the valid ones;
- the docs table comes from :meth:`ProtocolConfig.options_table` (``mpcml options NAME``);
- :meth:`__post_init__` runs every option's check, then the config's cross-field
  :meth:`validate`, so a bad value is a ``ValueError``/``TypeError`` naming it before any message.

Change a config with :func:`dataclasses.replace`, never by mutating it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mpcml.fe import GROUPS, config_group
from mpcml.floors import check_key_bits
from mpcml.he import DEFAULT_SCHEME, check_scheme

from .common import check_int, check_number

Check = Callable[[str, Any], Any]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def option(default: Any, help: str, check: Check | None = None) -> Any:  # noqa: A002 - the field's help text
    """A public parameter: ``default``, one line of ``help`` and a ``check(name, value) -> value``."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check})


# --- checks: each returns the value normalised to a plain Python type, or raises naming the parameter ---


def integer(low: int, high: int | None = None) -> Check:
    return lambda name, value: check_int(name, value, low, high)


def number(*, positive: bool = True, high: float | None = None) -> Check:
    return lambda name, value: check_number(name, value, positive=positive, high=high)


def one_of(*choices: str) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        return value

    return check


def he_key_bits(name: str, value: Any) -> int:
    """An additively homomorphic modulus size: at least 2048 bits outside tests (:mod:`mpcml.floors`), at most 8192."""
    return check_int(name, check_key_bits(name, value), 1024, 8192)


def he_scheme(name: str, value: Any) -> str:
    """An additively homomorphic scheme's name, one of :data:`mpcml.he.SCHEMES`."""
    return check_scheme(value, name)


def he_option(what: str) -> Any:
    """The ``he`` option: which additively homomorphic scheme ``what`` uses (Okamoto–Uchiyama by default).

    Declared with this one helper by every protocol that encrypts (CAESAR, SecureBoost, HE PCA, the
    dealer-free triples, HybridAlpha's packed baseline), so the choice, default and check are the same.
    """
    return option(DEFAULT_SCHEME, f"additively homomorphic scheme of {what}: `ou` (Okamoto–Uchiyama, faster at "
                  "equal key size) or `paillier`", he_scheme)


def fe_group(name: str, value: Any) -> str:
    """A shipped FE group's name; the ``INSECURE-...-tests-only`` group only with the test-only switch."""
    if value not in GROUPS:
        raise ValueError(f"{name} must be one of {sorted(GROUPS)}, got {value!r}")
    return config_group(value, name).name


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def optional(check: Check) -> Check:
    return lambda name, value: None if value is None else check(name, value)


# --- the base class --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """Base of every protocol config (see the module docstring)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                # normalising (numpy scalars -> Python numbers for the wire) is part of construction
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override (raise ``ValueError`` naming the parameters)."""

    @classmethod
    def option_fields(cls) -> tuple[dataclasses.Field, ...]:
        """The public parameters, in declaration order."""
        return tuple(f for f in dataclasses.fields(cls) if "help" in f.metadata)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in cls.option_fields())

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in cls.option_fields()}

    def options(self) -> dict[str, Any]:
        """The public parameters in effect."""
        return {name: getattr(self, name) for name in self.option_names()}

    def digest(self) -> str:
        """SHA-256 of the options in effect: equal at every party that agrees on them."""
        text = json.dumps({"config": type(self).__name__, **self.options()}, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def parse_options(cls, strings: Mapping[str, str], *, extra: Sequence[str] = ()) -> dict[str, Any]:
        """The options given as ``--option key=value`` strings, parsed by each field's type.

        Keys in ``extra`` (e.g. an app's demo-data options) are allowed and left out. An unknown
        key is a ``ValueError`` listing every valid one.
        """
        valid = cls.option_names()
        unknown = sorted(set(strings) - set(valid) - set(extra))
        if unknown:
            raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                             f"valid options: {', '.join(sorted((*valid, *extra)))}")
        hints = typing.get_type_hints(cls)
        return {name: parse_value(name, strings[name], hints[name]) for name in valid if name in strings}

    @classmethod
    def from_options(cls, strings: Mapping[str, str], *, extra: Sequence[str] = (), **fixed: Any) -> Any:
        """The config from ``--option`` strings (see :meth:`parse_options`) and ``fixed`` topology."""
        return cls(**cls.parse_options(strings, extra=extra), **fixed)

    @classmethod
    def options_table(cls) -> str:
        """The options as a Markdown table (name, type, default, meaning) for the docs."""
        hints = typing.get_type_hints(cls)
        rows = ["| option | type | default | meaning |", "|---|---|---|---|"]
        for f in cls.option_fields():
            rows.append(f"| `{f.name}` | {type_name(hints[f.name])} | `{f.default!r}` | {f.metadata['help']} |")
        return "\n".join(rows)


def type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if not args:
        return getattr(hint, "__name__", str(hint))
    names = [type_name(a) for a in args if a is not type(None)]
    return " or ".join(names + (["none"] if type(None) in args else []))


def parse_value(name: str, text: str, hint: Any) -> Any:
    """``text`` parsed as ``hint`` (int, float, str, bool, or a union of them, maybe with ``None``);
    a union tries its types in order (``int | float``: ``"5"`` is 5, ``"0.9"`` is 0.9). ``ValueError`` names ``name``."""
    if not isinstance(text, str):
        return text
    kinds = [hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(kinds) < len(typing.get_args(hint)) and text.strip().lower() in ("none", ""):
            return None
    for kind in kinds:
        try:
            return _parse_one(text, kind)
        except ValueError:
            continue
    raise ValueError(f"option {name!r} must be {type_name(hint)}, got {text!r}")


def _parse_one(text: str, kind: Any) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered not in _TRUE + _FALSE:
            raise ValueError(text)
        return lowered in _TRUE
    if kind is int:
        return int(text)
    if kind is float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    if kind is str:
        return text
    raise TypeError(f"a type ({kind}) that cannot be given on the command line")
