"""Inner-product functional encryption (IPFE): single-input and labelled multi-input, DDH-based.

**Single-input** (Abdalla, Bourse, De Caro, Pointcheval, PKC 2015, DDH scheme). Master key
``s`` in Z_q^n, public key ``h_j = g^{s_j}``. ``Enc(x) = (g^r, (h_j^r g^{x_j})_j)``; the key for
``y`` is ``sk_y = <s, y> mod q``; ``Dec = prod_j c_j^{y_j} / c_0^{sk_y} = g^{<x, y>}`` followed
by a bounded discrete log. A holder of ``sk_y`` learns ``<x, y>`` and nothing else about ``x``
(IND-CPA under DDH, selective security as in the paper).

**Multi-input with labels** (Abdalla, Catalano, Fiore, Gay, Ursu, CRYPTO 2018: MIFE from a
single-input scheme plus one-time pads). Slot ``i`` holds a single-input master key ``s_i`` and
a PRF key ``k_i``. To encrypt ``x_i`` under label ``l`` the slot adds the pad
``u_i(l) = PRF_{k_i}(l)`` in the exponent: ``Enc_i(x_i, l) = ABDP.Enc(x_i + u_i(l))``. A
function key for weights ``y = (y_1..y_n)`` and label ``l`` is
``({<s_i, y_i>}_i, z(l) = sum_i <u_i(l), y_i> mod q)``, and decryption yields
``g^{sum_i <x_i, y_i>}``. In ACFGU the pad is fixed per slot; here it is derived from the label
(the labelled / multi-client refinement, cf. Chotard et al., ASIACRYPT 2018), so ciphertexts
of different labels (rounds, tensors) never combine, and a key for label ``l`` decrypts only
label ``l``'s ciphertexts: under any other label the pads do not cancel and the result is a
uniformly random group element (the discrete-log search then fails). A slot encrypts a batch
of ``rows`` vectors in one ciphertext (one ``r``); row ``t`` gets its own pad ``u_i(l, t)``, so
rows are independent one-time-padded inner products and the key holds one ``z_t`` per row.

What each role learns. The authority (key holder) learns the weights it is asked to derive
keys for. The decryptor learns, per row, ``sum_i <x_i, y_i>`` for each key it holds and nothing
else about the ``x_i`` (pads are uniform in Z_q; PRF security). Encryptors learn nothing.
Semi-honest authority: it holds all master keys and could decrypt anything it sees, so
ciphertexts must not reach it. Issuing several keys for one label reveals several inner
products of the same data: callers that must prevent this (HybridAlpha's policy) refuse reuse.

Bounds. Encryption checks ``|x| <= bound_x``, key derivation ``|y| <= bound_y``; setup checks
that the largest result ``slots * n * bound_x * bound_y`` is below ``q / 2`` so the discrete log is
unique, and decryption searches exactly that range with a reusable baby-step giant-step table.

Groups. Any prime-order :class:`mpcml.dlog.Group` (DDH assumed hard): the default
:data:`DEFAULT_GROUP` is the secp256k1 curve (:mod:`mpcml.ec`, 33-byte elements); the 3072-bit
subgroup of Z_p^* (``dsa-3072-256``, 384-byte elements) stays available; :func:`group_by_name`
maps configuration names to groups. The schemes need no hashing into the group.

Randomness: ``r``, master keys and PRF keys come from :class:`mpcml.csprng.Csprng`; pads are
HMAC-SHA256(k_i, label) seeding an AES-CTR stream, each pad reduced from ``|q| + 64`` bits
(statistical distance from uniform below ``2^-64``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from . import codec
from .csprng import Csprng
from .dlog import GROUP_3072, INSECURE_TEST_GROUP, Group, check_bound, dlog_table
from .ec import SECP256K1
from .floors import check_insecure_name

Label = str | int | tuple

GROUPS: dict[str, Group] = {group.name: group for group in (SECP256K1, GROUP_3072, INSECURE_TEST_GROUP)}
DEFAULT_GROUP: Group = SECP256K1


def group_by_name(name: str) -> Group:
    """One of the shipped groups by name (for configuration and the wire); ``ValueError`` if unknown."""
    if name not in GROUPS:
        raise ValueError(f"unknown group {name!r}; known: {sorted(GROUPS)}")
    return GROUPS[name]


def config_group(name: str, field: str = "group") -> Group:
    """:func:`group_by_name` for a protocol configuration: the ``INSECURE-...-tests-only`` group is
    refused unless the test-only switch of :mod:`mpcml.floors` is on."""
    return group_by_name(check_insecure_name(field, group_by_name(name).name))


def label_bytes(label: Label) -> bytes:
    """Canonical bytes of a label (a str, an int, or a tuple of those such as ``(round, "weights")``)."""
    parts = label if isinstance(label, tuple) else (label,)
    if not parts or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in parts):
        raise TypeError(f"label must be a str, an int or a non-empty tuple of those, got {label!r}")
    return codec.encode(tuple(parts))


def check_int_array(x: Any, bound: int, name: str, ndim: int) -> np.ndarray:
    """An integer array of ``ndim`` dimensions with every ``|x| <= bound``, else a clear error naming ``name``."""
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise TypeError(f"{name} must be an integer array (quantise reals first), got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and int(np.max(np.abs(arr))) > bound:
        raise ValueError(f"{name} has an entry of magnitude {int(np.max(np.abs(arr)))} above its bound {bound}")
    return arr


def _check_bounds(params: Group, terms: int, bound_x: int, bound_y: int) -> int:
    for value, name in ((bound_x, "bound_x"), (bound_y, "bound_y")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    return check_bound(params, terms * bound_x * bound_y)


def _random_scalars(rng: Csprng, q: int, count: int) -> list[int]:
    return [rng.randbelow(q) for _ in range(count)]


# ---------------------------------------------------------------- single-input (ABDP 2015)


@dataclass(frozen=True)
class IPFEPublicKey:
    """ABDP public key ``h_j = g^{s_j}`` with the message and weight bounds it was set up for."""

    params: Group
    h: tuple[Any, ...]
    bound_x: int
    bound_y: int

    @property
    def dim(self) -> int:
        return len(self.h)

    @property
    def result_bound(self) -> int:
        return self.dim * self.bound_x * self.bound_y

    def encrypt(self, x: Any, rng: Csprng | None = None) -> "IPFECiphertext":
        """``(g^r, h_j^r g^{x_j})``; ``x`` is a 1-D integer vector with ``|x_j| <= bound_x``."""
        x = check_int_array(x, self.bound_x, "x", 1)
        if x.shape[0] != self.dim:
            raise ValueError(f"x has {x.shape[0]} entries but the key is for vectors of {self.dim}")
        group = self.params
        r = (rng or Csprng()).randbelow(group.q)
        c = [group.op(group.pow(h, r), group.gpow_small(xj)) for h, xj in zip(self.h, x.tolist())]
        return IPFECiphertext(group, group.gpow(r), tuple(c))


@dataclass(frozen=True)
class IPFECiphertext:
    group: Group
    c0: Any
    c: tuple[Any, ...]

    def to_wire(self) -> dict:
        return {"c0": self.group.element_to_wire(self.c0), "c": self.group.elements_to_wire(self.c)}

    @classmethod
    def from_wire(cls, obj: Any, params: Group) -> "IPFECiphertext":
        if not isinstance(obj, dict) or set(obj) != {"c0", "c"}:
            raise ValueError("malformed IPFE ciphertext: expected a dict with keys 'c0' and 'c'")
        c = tuple(params.elements_from_wire(obj["c"], "ciphertext entry"))
        return cls(params, params.element_from_wire(obj["c0"], "ciphertext c0"), c)


@dataclass(frozen=True)
class IPFEFunctionKey:
    y: tuple[int, ...]
    sk: int


@dataclass(frozen=True)
class IPFEMasterKey:
    """ABDP master secret ``s`` with its public key."""

    public: IPFEPublicKey
    s: tuple[int, ...]

    @classmethod
    def setup(cls, dim: int, bound_x: int, bound_y: int, params: Group = DEFAULT_GROUP) -> "IPFEMasterKey":
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        _check_bounds(params, dim, bound_x, bound_y)
        s = _random_scalars(Csprng(), params.q, dim)
        return cls(IPFEPublicKey(params, tuple(params.gpow(v) for v in s), bound_x, bound_y), tuple(s))

    def keygen(self, y: Any) -> IPFEFunctionKey:
        """``sk_y = <s, y> mod q`` for a weight vector with ``|y_j| <= bound_y``."""
        y = check_int_array(y, self.public.bound_y, "y", 1)
        if y.shape[0] != self.public.dim:
            raise ValueError(f"y has {y.shape[0]} entries but the key is for vectors of {self.public.dim}")
        ys = tuple(int(v) for v in y)
        return IPFEFunctionKey(ys, sum(s * v for s, v in zip(self.s, ys)) % self.public.params.q)


def ipfe_decrypt(public: IPFEPublicKey, key: IPFEFunctionKey, ct: IPFECiphertext) -> int:
    """``<x, y>``: ``prod c_j^{y_j} / c0^{sk_y}`` then a bounded discrete log (``ValueError`` if out of range)."""
    if len(ct.c) != public.dim or len(key.y) != public.dim:
        raise ValueError(f"ciphertext / key length does not match the public key's dimension {public.dim}")
    group = public.params
    value = group.op(group.multi_exp(ct.c, key.y), group.pow(ct.c0, -key.sk))
    bound = public.result_bound
    return dlog_table(group, bound).solve(value, bound)


# ---------------------------------------------------------------- multi-input with labels (ACFGU 2018)


def _pads(prf_key: bytes, label: Label, rows: int, dim: int, q: int) -> list[list[int]]:
    """``u(label)`` in Z_q^{rows x dim}: AES-CTR keyed by HMAC-SHA256(prf_key, label)."""
    seed = hmac.new(prf_key, b"mpcml-fe-pad\x00" + label_bytes(label), hashlib.sha256).digest()
    width = (q.bit_length() + 7) // 8 + 8
    raw = Csprng(seed).random_bytes(width * rows * dim)
    flat = [int.from_bytes(raw[k : k + width], "little") % q for k in range(0, len(raw), width)]
    return [flat[t * dim : (t + 1) * dim] for t in range(rows)]


@dataclass(frozen=True)
class MIFECiphertext:
    """One slot's labelled ciphertext of ``rows`` vectors: ``c0 = g^r``, ``c[t][j] = h_j^r g^{x_tj + u_tj}``."""

    group: Group
    slot: int
    label: Label
    c0: Any
    c: tuple[tuple[Any, ...], ...]

    def to_wire(self) -> dict:
        return {
            "slot": self.slot, "label": self.label, "c0": self.group.element_to_wire(self.c0), "rows": len(self.c),
            "c": self.group.elements_to_wire([v for row in self.c for v in row]),
        }

    @classmethod
    def from_wire(cls, obj: Any, params: Group) -> "MIFECiphertext":
        keys = {"slot", "label", "c0", "rows", "c"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise ValueError(f"malformed MIFE ciphertext: expected a dict with keys {sorted(keys)}")
        label_bytes(obj["label"])
        flat = params.elements_from_wire(obj["c"], "ciphertext entry")
        rows, slot = obj["rows"], obj["slot"]
        if not isinstance(rows, int) or rows < 1 or len(flat) % rows or not isinstance(slot, int):
            raise ValueError("malformed MIFE ciphertext: bad slot, row count or entry count")
        dim = len(flat) // rows
        c = tuple(tuple(flat[t * dim : (t + 1) * dim]) for t in range(rows))
        return cls(params, slot, obj["label"], params.element_from_wire(obj["c0"], "ciphertext c0"), c)


@dataclass(frozen=True)
class MIFESlotKey:
    """What the authority gives slot ``slot``'s owner: its ABDP public key and its pad PRF key (secret)."""

    slot: int
    public: IPFEPublicKey
    prf_key: bytes

    def to_wire(self) -> dict:
        """Codec form (secret: send only to the slot's owner over a confidential channel)."""
        pub = self.public
        return {
            "slot": self.slot, "group": pub.params.name, "h": pub.params.elements_to_wire(pub.h),
            "prf_key": self.prf_key, "bound_x": pub.bound_x, "bound_y": pub.bound_y,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> "MIFESlotKey":
        keys = {"slot", "group", "h", "prf_key", "bound_x", "bound_y"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise ValueError(f"malformed MIFE slot key: expected a dict with keys {sorted(keys)}")
        params = group_by_name(obj["group"])
        if not isinstance(obj["prf_key"], bytes) or len(obj["prf_key"]) != 32 or not isinstance(obj["slot"], int):
            raise ValueError("malformed MIFE slot key: bad slot or PRF key")
        h = tuple(params.elements_from_wire(obj["h"], "public key entry"))
        if not h:
            raise ValueError("malformed MIFE slot key: empty public key")
        _check_bounds(params, len(h), obj["bound_x"], obj["bound_y"])
        return cls(obj["slot"], IPFEPublicKey(params, h, obj["bound_x"], obj["bound_y"]), obj["prf_key"])

    def _randomness(self, rng: Csprng | None) -> tuple[Any, list[Any]]:
        """``(g^r, [h_j^r])`` for a fresh ``r``."""
        group = self.public.params
        r = (rng or Csprng()).randbelow(group.q)
        return group.gpow(r), [group.pow(h, r) for h in self.public.h]

    def prepare(self, label: Label, rows: int, rng: Csprng | None = None) -> "PreparedEncryption":
        """The message-independent part of an encryption under ``label`` (offline, before the data is known).

        ``c0 = g^r`` and ``M[t][j] = h_j^r g^{u_tj}``; :meth:`encrypt` then costs one small
        exponentiation and one multiplication per entry. Single use: a second encryption with the
        same preparation would reuse the pads and is refused.
        """
        if not isinstance(rows, int) or rows < 1:
            raise ValueError(f"rows must be a positive int, got {rows!r}")
        group = self.public.params
        c0, hr = self._randomness(rng)
        pads = _pads(self.prf_key, label, rows, self.public.dim, group.q)
        masks = [[group.op(hr[j], group.gpow(u)) for j, u in enumerate(pad)] for pad in pads]
        return PreparedEncryption(self.slot, label, c0, masks)

    def encrypt(
        self, x: Any, label: Label, rng: Csprng | None = None, prepared: "PreparedEncryption | None" = None
    ) -> MIFECiphertext:
        """Encrypt ``x`` (``rows x dim`` integers, ``|x| <= bound_x``; a 1-D vector is one row) under ``label``.

        Without a preparation each entry costs one fixed-base exponentiation ``g^{x + u}`` and one
        multiplication by ``h_j^r``.
        """
        x = np.asarray(x)
        x = check_int_array(x[None, :] if x.ndim == 1 else x, self.public.bound_x, "x", 2)
        rows, dim = x.shape
        if dim != self.public.dim:
            raise ValueError(f"x has rows of {dim} entries but slot {self.slot} encrypts vectors of {self.public.dim}")
        group = self.public.params
        if prepared is not None:
            masks = prepared.take(self.slot, label, rows)
            c = tuple(
                tuple(group.op(m, group.gpow_small(xv)) for m, xv in zip(mrow, row)) for mrow, row in zip(masks, x.tolist())
            )
            return MIFECiphertext(group, self.slot, label, prepared.c0, c)
        c0, hr = self._randomness(rng)
        pads = _pads(self.prf_key, label, rows, dim, group.q)
        c = tuple(
            tuple(group.op(hj, group.gpow(u + xv)) for hj, u, xv in zip(hr, pad, row)) for pad, row in zip(pads, x.tolist())
        )
        return MIFECiphertext(group, self.slot, label, c0, c)


class PreparedEncryption:
    """Offline part of one slot's encryption under one label (see :meth:`MIFESlotKey.prepare`); single use."""

    def __init__(self, slot: int, label: Label, c0: Any, masks: list[list[Any]]) -> None:
        self.slot, self.label, self.c0 = slot, label, c0
        self._masks: list[list[Any]] | None = masks

    def take(self, slot: int, label: Label, rows: int) -> list[list[Any]]:
        if self._masks is None:
            raise ValueError("this preparation was already used: reusing it would reuse the one-time pads")
        if slot != self.slot or label_bytes(label) != label_bytes(self.label) or rows != len(self._masks):
            raise ValueError(f"preparation is for slot {self.slot}, label {self.label!r}, {len(self._masks)} rows")
        masks, self._masks = self._masks, None
        return masks


@dataclass(frozen=True)
class MIFEFunctionKey:
    """Key for ``sum_i <x_i, y_i>`` on the rows of one label: ``d_i = <s_i, y_i>`` and, per row, the
    pad sum ``z_t`` (scalars) or, from prepared pads, the group elements ``zg_t = g^{-z_t}``."""

    group: Group
    label: Label
    y: tuple[tuple[int, ...], ...]
    d: tuple[int, ...]
    z: tuple[int, ...] = ()
    zg: tuple[Any, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.z) or len(self.zg)

    def to_wire(self) -> dict:
        return {
            "label": self.label, "y": [list(v) for v in self.y], "d": list(self.d), "z": list(self.z),
            "zg": self.group.elements_to_wire(self.zg),
        }

    @classmethod
    def from_wire(cls, obj: Any, params: Group) -> "MIFEFunctionKey":
        if not isinstance(obj, dict) or set(obj) != {"label", "y", "d", "z", "zg"}:
            raise ValueError("malformed MIFE function key")
        label_bytes(obj["label"])
        if bool(obj["z"]) == bool(obj["zg"]):
            raise ValueError("malformed MIFE function key: needs exactly one of z and zg")
        y = tuple(tuple(int(v) for v in row) for row in obj["y"])
        zg = tuple(params.elements_from_wire(obj["zg"], "key element"))
        return cls(params, obj["label"], y, tuple(int(v) for v in obj["d"]), tuple(int(v) for v in obj["z"]), zg)


class PreparedPads:
    """The authority's offline part of key derivation for one label: ``g^{-u_i(l, t, j)}`` for every slot."""

    def __init__(self, label: Label, elements: list[list[list[Any]]]) -> None:
        self.label, self.elements = label, elements

    @property
    def rows(self) -> int:
        return len(self.elements[0])


@dataclass(frozen=True)
class MIFEMasterKey:
    """The authority's keys for ``n_slots`` slots of ``dim``-vectors."""

    slots: tuple[IPFEMasterKey, ...]
    prf_keys: tuple[bytes, ...]

    @classmethod
    def setup(
        cls, n_slots: int, dim: int, bound_x: int, bound_y: int, params: Group = DEFAULT_GROUP
    ) -> "MIFEMasterKey":
        if not isinstance(n_slots, int) or n_slots < 1:
            raise ValueError(f"n_slots must be a positive int, got {n_slots!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        _check_bounds(params, n_slots * dim, bound_x, bound_y)
        rng = Csprng()
        slots = tuple(IPFEMasterKey.setup(dim, bound_x, bound_y, params) for _ in range(n_slots))
        return cls(slots, tuple(rng.random_bytes(32) for _ in range(n_slots)))

    @property
    def params(self) -> Group:
        return self.slots[0].public.params

    @property
    def result_bound(self) -> int:
        pub = self.slots[0].public
        return len(self.slots) * pub.dim * pub.bound_x * pub.bound_y

    def slot_key(self, slot: int) -> MIFESlotKey:
        if not isinstance(slot, int) or not 0 <= slot < len(self.slots):
            raise ValueError(f"slot must be in [0, {len(self.slots)}), got {slot!r}")
        return MIFESlotKey(slot, self.slots[slot].public, self.prf_keys[slot])

    def prepare_pads(self, label: Label, rows: int) -> PreparedPads:
        """Offline: ``g^{-u_i(l, t, j)}`` for all slots, so a later key for ``label`` costs only multiplications."""
        if not isinstance(rows, int) or rows < 1:
            raise ValueError(f"rows must be a positive int, got {rows!r}")
        group = self.params
        dim = self.slots[0].public.dim
        return PreparedPads(label, [
            [[group.gpow(-u) for u in pad] for pad in _pads(key, label, rows, dim, group.q)] for key in self.prf_keys
        ])

    def keygen(self, y: Any, label: Label, rows: int = 1, prepared: PreparedPads | None = None) -> MIFEFunctionKey:
        """Key for weights ``y`` (``n_slots x dim`` integers, ``|y| <= bound_y``) on ``rows`` rows of ``label``."""
        pub = self.slots[0].public
        y = check_int_array(y, pub.bound_y, "y", 2)
        if y.shape != (len(self.slots), pub.dim):
            raise ValueError(f"y must have shape ({len(self.slots)}, {pub.dim}) (slots x dim), got {y.shape}")
        if not isinstance(rows, int) or rows < 1:
            raise ValueError(f"rows must be a positive int, got {rows!r}")
        label_bytes(label)
        group = self.params
        q = group.q
        ys = tuple(tuple(int(v) for v in row) for row in y)
        d = tuple(sum(s * v for s, v in zip(m.s, yi)) % q for m, yi in zip(self.slots, ys))
        if prepared is not None:
            if label_bytes(prepared.label) != label_bytes(label) or prepared.rows != rows:
                raise ValueError(f"prepared pads are for label {prepared.label!r} and {prepared.rows} rows")
            exps = [v for yi in ys if any(yi) for v in yi]
            zg = tuple(
                group.multi_exp([e for elems, yi in zip(prepared.elements, ys) if any(yi) for e in elems[t]], exps)
                for t in range(rows)
            )
            return MIFEFunctionKey(group, label, ys, d, zg=zg)
        z = [0] * rows
        for key, yi in zip(self.prf_keys, ys):
            if any(yi):
                for t, pad in enumerate(_pads(key, label, rows, pub.dim, q)):
                    z[t] += sum(u * v for u, v in zip(pad, yi))
        return MIFEFunctionKey(group, label, ys, d, z=tuple(v % q for v in z))


def mife_decrypt(params: Group, key: MIFEFunctionKey, cts: Mapping[int, MIFECiphertext], bound: int) -> list[int]:
    """``[sum_i <x_i[t], y_i> for each row t]`` from the ciphertexts of every slot with non-zero weights.

    ``bound`` is the largest result magnitude to search (at most the master key's ``result_bound``);
    ``ValueError`` if a needed slot is missing, a label differs from the key's, or a result is not
    in ``[-bound, bound]`` (wrong key, label or data). Per row: one product of the slots' entries
    (a single multi-point addition for unit weights), the unmasking and a table lookup.
    """
    needed = [i for i, yi in enumerate(key.y) if any(yi)]
    missing = [i for i in needed if i not in cts]
    if missing:
        raise ValueError(f"no ciphertext for slots {missing}, which have non-zero weights in the key")
    rows = key.rows
    want = label_bytes(key.label)
    for i in needed:
        ct = cts[i]
        if ct.slot != i or label_bytes(ct.label) != want:
            raise ValueError(f"ciphertext for slot {i} has slot {ct.slot} / label {ct.label!r}, key is for {key.label!r}")
        if len(ct.c) != rows or any(len(row) != len(key.y[i]) for row in ct.c):
            raise ValueError(f"ciphertext for slot {i} has the wrong shape for the key ({rows} rows expected)")
    group = params
    unmask = group.prod([group.pow(cts[i].c0, -key.d[i]) for i in needed])
    solver = dlog_table(group, bound)
    exps = [v for i in needed for v in key.y[i]] + [1, 1]
    out = []
    for t in range(rows):
        pad = key.zg[t] if key.zg else group.gpow(-key.z[t])
        bases = [v for i in needed for v in cts[i].c[t]] + [unmask, pad]
        out.append(solver.solve(group.multi_exp(bases, exps), bound))
    return out


def mife_key_for_weights(master: MIFEMasterKey, weights: Sequence[int], label: Label, rows: int) -> MIFEFunctionKey:
    """Key for ``sum_i weights[i] * x_i[t]`` with one-dimensional slots (coordinate-wise weighted sums)."""
    return master.keygen(np.asarray(weights, dtype=np.int64).reshape(-1, 1), label, rows)
