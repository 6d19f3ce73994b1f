"""The public configuration every party of a run must agree on, its digest, and what differs.

At session start each party sends its peers the SHA-256 digest of the canonical JSON of
``{protocol, session, parties: {id: role}, options}`` (``Hello``); a peer whose digest differs
answers with its configuration, so both sides fail at set-up with one line naming the
differing key and both values (``option 'epochs' is '2' at 'alice' and '10' at 'bob'``)
instead of timing out later. Options an app declares local (``LOCAL_OPTIONS``, such as an
output folder) are left out. Mismatched data shapes are each protocol's own check.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


class ConfigurationMismatch(ValueError):
    """This party and a peer were started with different public configurations."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Agreement:
    """One party's public configuration of a run."""

    protocol: str
    session: str
    parties: Mapping[str, str]
    options: Mapping[str, str]

    @classmethod
    def of(cls, protocol: str, session: str, roles: Mapping[str, str], options: Mapping[str, Any],
           local_options: Iterable[str] = ()) -> "Agreement":
        """The configuration of a run; ``options`` maps each option to its value in effect (kept as ``str``)."""
        local = frozenset(local_options)
        return cls(protocol, session, dict(sorted(roles.items())),
                   {key: str(value) for key, value in sorted(options.items()) if key not in local})

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "session": self.session, "parties": dict(self.parties),
                "options": dict(self.options)}

    @property
    def text(self) -> str:
        """Canonical JSON: sorted keys, no spaces, ASCII."""
        return _canonical(self.as_dict())

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.text.encode("ascii")).digest()

    def differences(self, theirs: str, me: str, peer: str) -> str:
        """One line naming every key where ``theirs`` (a peer's :attr:`text`) differs from ours."""
        try:
            other = json.loads(theirs)
            if not isinstance(other, dict) or set(other) != {"protocol", "session", "parties", "options"}:
                raise ValueError
            fields = [("protocol", self.protocol, other["protocol"]), ("session", self.session, other["session"])]
            fields += _table("role of party", self.parties, other["parties"])
            fields += _table("option", self.options, other["options"])
        except (ValueError, TypeError, AttributeError):
            return f"{peer!r} sent a configuration that does not parse: {theirs[:200]!r}"
        parts = [f"{name} is {_show(mine)} at {me!r} and {_show(its)} at {peer!r}" for name, mine, its in fields if mine != its]
        return "; ".join(parts) or "the configurations differ only in their encoding"


_MISSING = object()


def _table(name: str, mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(f"{name} {key!r}", mine.get(key, _MISSING), theirs.get(key, _MISSING)) for key in sorted({*mine, *theirs})]


def _show(value: Any) -> str:
    return "not given" if value is _MISSING else repr(value)
