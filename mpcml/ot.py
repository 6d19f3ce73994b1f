"""Random oblivious transfer between two parties: base OTs on secp256k1, extended by IKNP.

Bit-level correlated randomness (AND triples, products of two parties' random bits) costs one
homomorphic encryption per bit with Paillier or OU; an extended OT costs a few AES blocks. This
module gives :class:`mpcml.paillier_triples.PaillierTriples` millions of random OTs per second.

- **Base OTs** (Chou–Orlandi, "The simplest protocol for oblivious transfer", LATINCRYPT 2015):
  # 1. the base sender draws ``y`` and sends ``S = yG``; # 2. the base receiver with choice ``c_j``
  draws ``x_j`` and sends ``R_j = x_j G + c_j S``, keeping ``k_j = H(j, x_j S)``; # 3. the base
  sender derives ``k_j^0 = H(j, y R_j)`` and ``k_j^1 = H(j, y (R_j - S))``. Semi-honest security under
  computational Diffie–Hellman on secp256k1 in the random-oracle model (SHA-256).
- **Extension** (Ishai–Kilian–Nissim–Petrank, CRYPTO 2003, semi-honest): ``κ = 128`` base OTs with
  the roles reversed. The extension receiver holds seed pairs ``(k_j^0, k_j^1)``, the extension
  sender a random ``s`` and ``k_j^{s_j}``. For ``m`` OTs with random choices ``r``: # 4. the receiver
  sends ``u_j = G(k_j^0) xor G(k_j^1) xor r`` (``G``: AES-128-CTR, fresh counters every call);
  # 5. the sender computes ``q_j = G(k_j^{s_j}) xor s_j u_j``; transposed, row ``i`` is
  ``q_i = t_i xor r_i s``. Outputs: sender ``x_i^0 = H(i, q_i)``, ``x_i^1 = H(i, q_i xor s)``,
  receiver ``x_i^{r_i} = H(i, t_i)``, with ``H`` the tweakable correlation-robust hash
  ``π(π(x) xor i) xor π(x)`` of fixed-key AES (Guo–Katz–Wang–Yu, S&P 2020). The receiver learns
  nothing of ``x^{1-r}``, the sender nothing of ``r`` (semi-honest; 128-bit computational security).

Randomness: every seed, scalar and choice bit comes from the party's CSPRNG. Nothing here is
malicious-secure (no consistency checks): the parties are semi-honest, as in every dealer-free
triple protocol of this library.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .csprng import Csprng
from .ec import SECP256K1

KAPPA = 128
_BLOCK = 16
MAX_WORDS = 1 << 16  # 128-bit blocks per OT message: the word index fills two bytes of the hash's tweak
_FIXED_KEY = hashlib.sha256(b"mpcml.ot fixed-key AES for the correlation-robust hash").digest()[:16]


def _aes_ecb(blocks: np.ndarray) -> np.ndarray:
    """The fixed-key AES permutation on each 16-byte row of ``blocks`` (uint8, shape ``(m, 16)``)."""
    encryptor = Cipher(algorithms.AES(_FIXED_KEY), modes.ECB()).encryptor()
    out = encryptor.update(np.ascontiguousarray(blocks).tobytes()) + encryptor.finalize()
    return np.frombuffer(out, dtype=np.uint8).reshape(blocks.shape)


def tccr_hash(rows: np.ndarray, first_index: int, words: int = 1) -> np.ndarray:
    """``words`` 128-bit outputs per row: ``π(π(x) xor tweak) xor π(x)``, tweak = ``(index, word)`` (at most 2^16 words)."""
    if not 1 <= words <= MAX_WORDS:
        raise ValueError(f"words must be in [1, {MAX_WORDS}], got {words!r}")
    count = rows.shape[0]
    image = _aes_ecb(rows)
    out = np.empty((count, words * _BLOCK), dtype=np.uint8)
    index = np.arange(first_index, first_index + count, dtype=np.uint64)
    for w in range(words):
        tweak = np.zeros((count, _BLOCK), dtype=np.uint8)
        tweak[:, :8] = index.view(np.uint8).reshape(count, 8)
        tweak[:, 8:10] = np.frombuffer(w.to_bytes(2, "little"), dtype=np.uint8)
        out[:, w * _BLOCK : (w + 1) * _BLOCK] = _aes_ecb(image ^ tweak) ^ image
    return out


def _prg(seed: bytes, call: int, nbytes: int) -> np.ndarray:
    """AES-128-CTR keystream of ``seed`` for call number ``call`` (counter blocks never reused)."""
    nonce = call.to_bytes(8, "little") + bytes(8)
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(nonce)).encryptor()
    return np.frombuffer(encryptor.update(bytes(nbytes)) + encryptor.finalize(), dtype=np.uint8)


def _base_key(index: int, point: Any) -> bytes:
    return hashlib.sha256(index.to_bytes(4, "little") + SECP256K1.element_to_wire(point)).digest()[:16]


class OTExtension:
    """Random OTs in both directions between this party and ``peer`` (``send``/``recv`` are the party's).

    Construct it at both parties (one round of base OTs each way); then :meth:`extend` with the same
    ``count`` at both returns this party's outputs as sender and as receiver of ``count`` random OTs
    each way (one round, ``16 * count`` bytes each way).
    """

    def __init__(self, send: Callable[[Any], None], recv: Callable[[], Any], rng: Csprng) -> None:
        self._send, self._recv, self._rng = send, recv, rng
        self._calls = 0
        self._index = 0
        group = SECP256K1
        # Base OTs, both directions at once: as base sender (the extension receiver) and base receiver.
        y = rng.randbelow(group.q - 1) + 1
        big_s = group.gpow(y)
        send({"S": group.element_to_wire(big_s)})  # 1.
        their_s = group.element_from_wire(self._field(recv(), "S"), "S")
        self._s_bits = rng.random_bits(KAPPA).astype(np.uint8)
        xs = [rng.randbelow(group.q - 1) + 1 for _ in range(KAPPA)]
        points = [group.op(group.gpow(x), their_s) if bit else group.gpow(x) for x, bit in zip(xs, self._s_bits)]
        send({"R": [group.element_to_wire(p) for p in points]})  # 2.
        self._chosen = [_base_key(j, group.pow(their_s, x)) for j, x in enumerate(xs)]
        theirs = self._field(recv(), "R")
        if not isinstance(theirs, list) or len(theirs) != KAPPA:
            raise ValueError(f"base OT message must hold {KAPPA} points")
        minus_s = group.inv(big_s)
        self._pairs = []
        for j, wire in enumerate(theirs):  # 3.
            point = group.element_from_wire(wire, "R")
            self._pairs.append((_base_key(j, group.pow(point, y)), _base_key(j, group.pow(group.op(point, minus_s), y))))
        self._s_row = np.packbits(self._s_bits)

    @staticmethod
    def _field(message: Any, name: str) -> Any:
        if not isinstance(message, dict) or set(message) != {name}:
            raise ValueError(f"expected an OT message with field {name!r}")
        return message[name]

    def extend(self, count: int, words: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``count`` random OTs each way: ``(x0, x1)`` as sender and ``(choices, x_choice)`` as receiver.

        Each message is ``words`` 128-bit blocks (``uint8`` rows of ``16 * words`` bytes); choices are
        uniformly random bits (``uint8``).
        """
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a non-negative int, got {count!r}")
        padded = -(-count // 8) * 8
        nbytes = padded // 8
        call, first = self._calls, self._index
        self._calls += 1
        self._index += count
        choices = self._rng.random_bits(padded).astype(np.uint8)
        packed_choices = np.packbits(choices)
        t = np.empty((KAPPA, nbytes), dtype=np.uint8)
        u = np.empty((KAPPA, nbytes), dtype=np.uint8)
        for j, (k0, k1) in enumerate(self._pairs):  # 4.
            t[j] = _prg(k0, call, nbytes)
            u[j] = t[j] ^ _prg(k1, call, nbytes) ^ packed_choices
        self._send({"U": u.tobytes()})
        theirs = self._field(self._recv(), "U")
        if not isinstance(theirs, bytes) or len(theirs) != KAPPA * nbytes:
            raise ValueError(f"OT extension message must hold {KAPPA * nbytes} bytes")
        their_u = np.frombuffer(theirs, dtype=np.uint8).reshape(KAPPA, nbytes)
        q = np.empty((KAPPA, nbytes), dtype=np.uint8)
        for j, (seed, bit) in enumerate(zip(self._chosen, self._s_bits)):  # 5.
            q[j] = _prg(seed, call, nbytes) ^ (their_u[j] if bit else 0)
        q_rows, t_rows = _transpose(q)[:count], _transpose(t)[:count]
        x0 = tccr_hash(q_rows, first, words)
        x1 = tccr_hash(q_rows ^ self._s_row, first, words)
        return x0, x1, choices[:count], tccr_hash(t_rows, first, words)


def _transpose(matrix: np.ndarray) -> np.ndarray:
    """``(κ, m/8)`` packed bit columns -> ``(m, κ/8)`` packed rows."""
    bits = np.unpackbits(matrix, axis=1)
    return np.packbits(bits.T, axis=1)
