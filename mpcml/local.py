"""In-process runtime: one thread per party over in-memory inboxes."""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Sequence

from .party import DEFAULT_TIMEOUT, CommStats, Inbox, Party, PartyAborted


class PartyFailed(RuntimeError):
    """A role function raised; ``party_id`` names the party, ``__cause__`` is its exception."""

    def __init__(self, party_id: str, exc: BaseException) -> None:
        self.party_id = party_id
        super().__init__(f"party {party_id!r} failed: {type(exc).__name__}: {exc}")


class RunOutputs(dict):
    """``{party_id: output}``, plus ``.stats``: ``{party_id: CommStats}`` of the run."""

    stats: dict[str, CommStats]


class LocalParty(Party):
    """A party whose peers are threads of the same process; each party reads its own :class:`Inbox`."""

    def __init__(
        self,
        party_id: str,
        peers: tuple[str, ...],
        inboxes: Mapping[str, Inbox],
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(party_id, peers, timeout=timeout)
        self._inboxes = inboxes

    def _send_bytes(self, to: str, segments: list[memoryview], acknowledged: bool) -> None:
        self._inboxes[to].put(self.id, b"".join(segments))

    def _recv_any(self, senders: Sequence[str], timeout: float) -> tuple[str, bytes]:
        return self._inboxes[self.id].get(senders, timeout)

    def abort_all(self, reason: str) -> None:
        """Wake every party of this run waiting on a message; each raises ``PartyAborted(reason)``."""
        for inbox in self._inboxes.values():
            inbox.abort(reason)


def make_local_parties(ids: list[str] | tuple[str, ...], *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, LocalParty]:
    """Connected :class:`LocalParty` objects, for code that drives its own threads."""
    ids = tuple(ids)
    if len(ids) < 1 or len(set(ids)) != len(ids):
        raise ValueError(f"party ids must be distinct and non-empty, got {ids!r}")
    for pid in ids:
        if not isinstance(pid, str) or not pid:
            raise ValueError(f"party ids must be non-empty strings, got {pid!r}")
    inboxes = {pid: Inbox(p for p in ids if p != pid) for pid in ids}
    return {pid: LocalParty(pid, tuple(p for p in ids if p != pid), inboxes, timeout=timeout) for pid in ids}


def check_roles(roles: Mapping[str, Callable[..., Any]], inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The inputs, after checking that every role is callable and every input has a role."""
    inputs = dict(inputs or {})
    unknown = set(inputs) - set(roles)
    if unknown:
        raise ValueError(f"inputs given for parties without a role: {sorted(unknown)}")
    for pid, role in roles.items():
        if not callable(role):
            raise TypeError(f"role for party {pid!r} is not callable")
    return inputs


def run_threads(
    parties: Mapping[str, Party],
    roles: Mapping[str, Callable[..., Any]],
    inputs: Mapping[str, Any],
    abort_all: Callable[[str], None],
) -> RunOutputs:
    """Run ``roles[pid](parties[pid], *inputs[pid])`` on one thread per party, whatever the transport.

    When a role raises, ``abort_all(reason)`` wakes every waiting party (they raise
    :class:`PartyAborted`) and :class:`PartyFailed` naming the first party that failed (not merely
    aborted) is raised from its exception once every thread has ended.
    """
    outputs = RunOutputs()
    failures: list[tuple[str, BaseException]] = []
    lock = threading.Lock()

    def run(pid: str) -> None:
        args = inputs.get(pid, ())
        try:
            result = roles[pid](parties[pid], **args) if isinstance(args, Mapping) else roles[pid](parties[pid], *args)
            parties[pid].flush()
            with lock:
                outputs[pid] = result
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            with lock:
                failures.append((pid, exc))
            abort_all(f"stopped: party {pid!r} failed ({type(exc).__name__})")

    threads = [threading.Thread(target=run, args=(pid,), name=f"mpcml-{pid}", daemon=True) for pid in roles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        primary = [f for f in failures if not isinstance(f[1], PartyAborted)] or failures
        pid, exc = primary[0]
        raise PartyFailed(pid, exc) from exc
    outputs.stats = {pid: party.stats for pid, party in parties.items()}
    return outputs


def run_local(
    roles: Mapping[str, Callable[..., Any]],
    inputs: Mapping[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> RunOutputs:
    """Run ``roles[pid](party, *inputs[pid])`` for every party on its own thread, over in-memory inboxes.

    ``inputs[pid]`` is a tuple of positional arguments or a dict of keyword arguments (missing:
    no arguments). Returns ``{pid: output}`` with each party's communication in ``.stats``. If a
    role raises, the other parties are aborted and :class:`PartyFailed` naming the first failing
    party is raised from its exception.
    """
    inputs = check_roles(roles, inputs)
    parties = make_local_parties(list(roles), timeout=timeout)
    return run_threads(parties, roles, inputs, next(iter(parties.values())).abort_all)
