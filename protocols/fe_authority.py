"""What HybridAlpha and FedV share: the authority's key service, labels, quantisation and wire shapes.

Both protocols (Xu et al., AISec 2019 and 2021) have a trusted third-party authority (TPA) that
holds the functional-encryption master keys (:mod:`mpcml.fe`) and derives function keys for an
aggregator under an inference-prevention policy. The TPA never receives a ciphertext. The key
service (:func:`serve_keys`) is one loop for both protocols:

1. the aggregator sends a request (:func:`request_key`);
2. the TPA checks it against its policy; a granted request spends its label (a :class:`LabelLedger`
   allows each label at most a fixed number of keys, so no ciphertext is decrypted under more
   functions than the protocol needs);
3. the TPA answers with the key (HybridAlpha's Paillier baselines: the decrypted sum) or a
   refusal, which the aggregator raises as :class:`KeyRequestRefused`; ``stop`` ends the service.

FE labels are tuples such as ``(round, "update")``; requests carry the round, epoch and batch
numbers as integers and both sides build the label from them, so a label never travels as data.

Decryption ends in a discrete log searched outward from 0 with a baby-step table of the group's
``dlog_max_table`` entries (built once per process): a result ``v`` costs about
``|v| / (2 dlog_max_table)`` giant steps. The protocols' range analyses keep every search bound
below :func:`searchable`: at most :data:`DLOG_GIANT_STEPS` giant steps (about 1 s on one core on
the curve, measured 50 us per step at load 26), so a decryption can never run for hours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from mpcml.dlog import Group
from mpcml.fe import label_bytes
from mpcml.party import Party
from mpcml.schema import Anything, Bytes, Int, ListOf, OneOf, Record, Spec, Str

log = logging.getLogger(__name__)

STOP = Record(type=Str(("stop",)))
REFUSAL = Record(refused=Str())
READY = Record(ready=Int(0, 0))
"""Sent to the aggregator when a role has finished its set-up (keys received, preparations made)."""

SLOT_KEY = Record(slot=Int(low=0), group=Str(), h=Anything(), prf_key=Bytes(32), bound_x=Int(low=1),
                  bound_y=Int(low=1))
"""A party's MIFE slot key (:meth:`mpcml.fe.MIFESlotKey.to_wire`); group elements are checked by ``from_wire``."""
CIPHERTEXT = Record(slot=Int(low=0), label=Anything(), c0=Anything(), rows=Int(low=1), c=Anything())
"""A labelled MIFE ciphertext (:meth:`mpcml.fe.MIFECiphertext.to_wire`)."""
FUNCTION_KEY = Record(label=Anything(), y=ListOf(ListOf(Int())), d=ListOf(Int(low=0)), z=ListOf(Int(low=0)),
                      zg=Anything())
"""A MIFE function key (:meth:`mpcml.fe.MIFEFunctionKey.to_wire`)."""


DLOG_GIANT_STEPS = 2**16


def searchable(group: Group) -> int:
    """The largest discrete log searched within :data:`DLOG_GIANT_STEPS` giant steps (and below ``q / 2``)."""
    return min((2 * group.dlog_max_table + 1) * DLOG_GIANT_STEPS, (group.q - 1) // 2)


def search_bound(group: Group, bound: int) -> int:
    """The bound to pass to a decryption: ``bound``, raised to the table size so every search uses the one table."""
    return max(int(bound), group.dlog_max_table)


class KeyRequestRefused(RuntimeError):
    """The TPA refused a key request (inference-prevention policy)."""


def quantise(values: Any, frac_bits: int) -> np.ndarray:
    """``round(values * 2^frac_bits)`` as int64 (the callers check the agreed bounds and name the value)."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("cannot quantise NaN or inf")
    return np.rint(arr * 2.0**frac_bits).astype(np.int64)


@dataclass
class LabelLedger:
    """The labels the TPA has issued keys for: at most ``per_label`` keys under one label."""

    per_label: int = 1
    issued: dict[bytes, int] = field(default_factory=dict)

    def refusal(self, label: tuple) -> str | None:
        """Why a key for ``label`` is refused, or ``None`` (and the key is counted)."""
        key = label_bytes(label)
        if self.issued.get(key, 0) >= self.per_label:
            return f"label {label!r} already had {self.per_label} key(s)"
        self.issued[key] = self.issued.get(key, 0) + 1
        return None


def request_key(party: Party, tpa: str, request: Mapping[str, Any], expect: Spec, what: str,
                timeout: float | None = None) -> Any:
    """Steps 1 and 3 at the aggregator: send ``request`` to the TPA and return its answer (``expect``)."""
    # 1. the request
    party.send(tpa, dict(request))
    # 3. the key, or the refusal
    reply = party.recv(tpa, timeout, expect=OneOf(REFUSAL, expect), what=what)
    if "refused" in reply:
        raise KeyRequestRefused(reply["refused"])
    return reply


def serve_keys(party: Party, aggregator: str, *, expect: Spec, refusal: Callable[[dict], str | None],
               answer: Callable[[dict], Any], label: Callable[[dict], tuple], timeout: float | None = None
               ) -> dict[str, list]:
    """Step 2 at the TPA: answer the aggregator's requests (``expect``) until it sends ``stop``.

    ``refusal(request)`` is the policy (a reason, or ``None``); ``answer(request)`` the key;
    ``label(request)`` the FE label the request is for. Returns ``{"granted": [labels],
    "refused": [[label, reason]]}``.
    """
    record: dict[str, list] = {"granted": [], "refused": []}
    while True:
        request = party.recv(aggregator, timeout, expect=OneOf(STOP, expect), what="key request")
        if request.get("type") == "stop":
            return record
        # 2. the policy; a granted request spends its label
        name = label(request)
        reason = refusal(request)
        if reason is not None:
            log.info("TPA %s refused a key for %r: %s", party.id, name, reason)
            record["refused"].append([list(name), reason])
            party.send(aggregator, {"refused": reason})
            continue
        record["granted"].append(list(name))
        party.send(aggregator, answer(request))
