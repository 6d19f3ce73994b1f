"""How HybridAlpha's parties hide their updates and the aggregator obtains their sum: one class per scheme.

Every scheme answers the same five calls, made by the roles of :mod:`protocols.hybridalpha.protocol`
in this order:

- :meth:`AggregationScheme.setup` at every role: the key holder (the TPA party) creates the keys
  and sends each party (and, for Paillier, the aggregator) its own; the others receive theirs;
- :meth:`~AggregationScheme.encrypt` at a party, per round: its quantised update -> the payload;
- :meth:`~AggregationScheme.combine` at the aggregator: the fields it adds to its key request
  (Paillier: the summed ciphertext);
- :meth:`~AggregationScheme.answer` at the TPA, once its policy granted the request: the FE key
  (Paillier: the decrypted sum);
- :meth:`~AggregationScheme.decrypt` at the aggregator: the exact integer sum of the responders'
  quantised updates.

``fe`` is HybridAlpha (labelled MIFE, :mod:`mpcml.fe`); ``paillier-packed`` (mpcml's packed
additively homomorphic encryption, of the scheme ``he``: Okamoto–Uchiyama by default, or Paillier), ``phe`` (one ``phe`` ciphertext per value) and ``plain`` (updates in the clear) are
the baselines, run through the same roles and the same TPA policy. With Paillier the key holder
decrypts what the aggregator sends it and cannot tell a sum from a single update: its policy
check rests on the aggregator's word.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import phe

from mpcml import he
from mpcml.dlog import dlog_table
from mpcml.fe import MIFECiphertext, MIFEFunctionKey, MIFEMasterKey, MIFESlotKey, group_by_name, label_bytes, mife_decrypt
from mpcml.party import Party
from mpcml.schema import Anything, Array, Int, ListOf, Record, Spec

from ..fe_authority import CIPHERTEXT, FUNCTION_KEY, SLOT_KEY, search_bound
from .config import HybridAlphaConfig, Plan

PUBLIC_KEY = Anything()  # checked by mpcml.he.public_key_from_wire against the expected scheme


class AggregationScheme:
    """Base of the schemes (see the module docstring); ``payload``/``extra``/``reply`` are the wire shapes of
    a party's payload, the aggregator's additions to a key request and the TPA's answer."""

    name: ClassVar[str]
    payload: Spec
    extra: dict[str, Spec] = {}
    reply: Spec = Record()

    def __init__(self, config: HybridAlphaConfig, plan: Plan) -> None:
        self.config, self.plan = config, plan

    def setup(self, party: Party) -> None:
        """Step 1 (all roles): nothing to set up for a scheme without keys."""

    def encrypt(self, update: np.ndarray, rnd: int) -> Any:
        raise NotImplementedError

    def combine(self, payloads: Mapping[str, Any], rnd: int) -> dict[str, Any]:
        return {}

    def answer(self, request: Mapping[str, Any]) -> Any:
        return {}

    def decrypt(self, reply: Any, payloads: Mapping[str, Any], weights: list[int], rnd: int) -> np.ndarray:
        raise NotImplementedError


class FEScheme(AggregationScheme):
    """Labelled multi-input inner-product FE, one one-dimensional slot per party, one row per parameter.

    The party in slot ``i`` encrypts ``round(u * 2^f)`` under the label ``(round, "update")``; the
    TPA's key for weights ``w`` (0/1 over the slots) and that label lets the aggregator decrypt
    ``sum_i w_i x_i`` coordinate-wise, and nothing else (ACFGU 2018, :mod:`mpcml.fe`). With
    ``precompute`` every round's masks (parties) and pads (TPA) are prepared at set-up.
    """

    name = "fe"
    payload = CIPHERTEXT
    reply = FUNCTION_KEY

    def setup(self, party: Party) -> None:
        config, plan = self.config, self.plan
        self.group = group_by_name(config.group)
        rounds = range(config.rounds) if config.precompute else range(0)
        if party.id == config.tpa:
            self.master = MIFEMasterKey.setup(len(plan.parties), 1, plan.bound, 1, self.group)
            for slot, pid in enumerate(plan.parties):
                party.send(pid, self.master.slot_key(slot).to_wire())
            self.prepared = {r: self.master.prepare_pads(config.label(r), plan.n_params) for r in rounds}
        elif party.id == config.aggregator:
            dlog_table(self.group, search_bound(self.group, len(plan.parties) * plan.bound))  # reused by every decryption
        else:
            self.key = MIFESlotKey.from_wire(party.recv(config.tpa, expect=SLOT_KEY, what="MIFE slot key"))
            if (self.key.public.params.name, self.key.slot, self.key.public.bound_x) != (
                    config.group, plan.parties.index(party.id), plan.bound):
                raise ValueError(f"the slot key from the TPA {config.tpa!r} does not match the plan (group, slot, bound)")
            self.prepared = {r: self.key.prepare(config.label(r), plan.n_params) for r in rounds}

    def encrypt(self, update: np.ndarray, rnd: int) -> Any:
        label = self.config.label(rnd)
        return self.key.encrypt(update.reshape(-1, 1), label, prepared=self.prepared.pop(rnd, None)).to_wire()

    def answer(self, request: Mapping[str, Any]) -> Any:
        rnd = request["round"]
        weights = np.asarray(request["weights"], dtype=np.int64).reshape(-1, 1)
        key = self.master.keygen(weights, self.config.label(rnd), self.plan.n_params, self.prepared.pop(rnd, None))
        return key.to_wire()

    def decrypt(self, reply: Any, payloads: Mapping[str, Any], weights: list[int], rnd: int) -> np.ndarray:
        key = MIFEFunctionKey.from_wire(reply, self.group)
        if [row[0] for row in key.y] != weights or label_bytes(key.label) != label_bytes(self.config.label(rnd)):
            raise ValueError(f"the key from the TPA {self.config.tpa!r} does not match the request of round {rnd}")
        slots = {self.plan.parties.index(pid): MIFECiphertext.from_wire(ct, self.group) for pid, ct in payloads.items()}
        sums = mife_decrypt(self.group, key, slots, search_bound(self.group, sum(weights) * self.plan.bound))
        return np.asarray(sums, dtype=np.int64)


class _PaillierScheme(AggregationScheme):
    """The homomorphic baselines: the TPA party holds the private key and decrypts the aggregated sum."""

    def he_scheme(self) -> str:
        """The additively homomorphic scheme of the keys (:data:`mpcml.he.SCHEMES`)."""
        return "paillier"

    def setup(self, party: Party) -> None:
        config, scheme = self.config, self.he_scheme()
        if party.id == config.tpa:
            self.public, self.private = he.generate_keypair(scheme, config.paillier_bits)
            party.send_all([*self.plan.parties, config.aggregator], self.public.to_wire())
        else:
            self.public = he.public_key_from_wire(party.recv(config.tpa, expect=PUBLIC_KEY, what="public key"), scheme)
        self.reply = Record(sum=Array(np.int64, shape=(self.plan.n_params,)))

    def decrypt(self, reply: Any, payloads: Mapping[str, Any], weights: list[int], rnd: int) -> np.ndarray:
        return reply["sum"]


class PackedPaillierScheme(_PaillierScheme):
    """mpcml's packed HE (option ``he``): each party's update packed ``slot_bits`` wide into the key's plaintexts."""

    name = "paillier-packed"
    payload = Anything()  # checked by PackedEncryptedArray.from_wire
    extra = {"sum": Anything()}

    def he_scheme(self) -> str:
        return self.config.he

    def encrypt(self, update: np.ndarray, rnd: int) -> Any:
        f = self.config.frac_bits
        return he.encrypt_packed(self.public, update.astype(np.float64) / 2.0**f, frac_bits=f,
                                       slot_bits=self.plan.slot_bits(), max_summands=len(self.plan.parties)).to_wire()

    def combine(self, payloads: Mapping[str, Any], rnd: int) -> dict[str, Any]:
        arrays = [he.PackedEncryptedArray.from_wire(self.public, v) for v in payloads.values()]
        total = arrays[0]
        for arr in arrays[1:]:
            total = total + arr
        return {"sum": total.to_wire()}

    def answer(self, request: Mapping[str, Any]) -> Any:
        packed = he.PackedEncryptedArray.from_wire(self.public, request["sum"])
        values = he.decrypt_packed(self.private, packed)[0]
        return {"sum": np.rint(values * 2.0**self.config.frac_bits).astype(np.int64)}


class PheScheme(_PaillierScheme):
    """``phe``'s Paillier, one ciphertext per quantised value (the slow baseline)."""

    name = "phe"

    def setup(self, party: Party) -> None:
        super().setup(party)
        ciphertexts = ListOf(Int(1, self.public.nsquare - 1), length=self.plan.n_params)
        self.payload, self.extra = ciphertexts, {"sum": ciphertexts}

    def encrypt(self, update: np.ndarray, rnd: int) -> Any:
        return [self.public.phe.encrypt(int(v)).ciphertext() for v in update]

    def combine(self, payloads: Mapping[str, Any], rnd: int) -> dict[str, Any]:
        n2 = self.public.nsquare
        total = [1] * self.plan.n_params
        for cts in payloads.values():
            total = [a * b % n2 for a, b in zip(total, cts)]
        return {"sum": total}

    def answer(self, request: Mapping[str, Any]) -> Any:
        pub = self.private.phe.public_key
        return {"sum": np.array([self.private.phe.decrypt(phe.EncryptedNumber(pub, c, 0)) for c in request["sum"]],
                                dtype=np.int64)}


class PlainScheme(AggregationScheme):
    """No encryption: the parties send their quantised updates and the aggregator adds them (after the
    TPA's policy check, so the rounds are the same as with encryption)."""

    name = "plain"

    def setup(self, party: Party) -> None:
        self.payload = Array(np.int64, shape=(self.plan.n_params,))

    def encrypt(self, update: np.ndarray, rnd: int) -> Any:
        return update

    def decrypt(self, reply: Any, payloads: Mapping[str, Any], weights: list[int], rnd: int) -> np.ndarray:
        return sum(payloads.values(), np.zeros(self.plan.n_params, dtype=np.int64))


SCHEME_CLASSES: dict[str, type[AggregationScheme]] = {
    cls.name: cls for cls in (FEScheme, PackedPaillierScheme, PheScheme, PlainScheme)
}


def make_scheme(config: HybridAlphaConfig, plan: Plan) -> AggregationScheme:
    """The scheme named by ``config.scheme`` for this run's plan (call :meth:`~AggregationScheme.setup` next)."""
    return SCHEME_CLASSES[config.scheme](config, plan)
