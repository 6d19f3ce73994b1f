"""CAESAR: secure sparse logistic regression for two parties, Paillier + secret sharing.

Chen, Zhou, Wang et al., "When Homomorphic Encryption Marries Secret Sharing: Secure
Large-Scale Sparse Logistic Regression and Applications in Risk Control", KDD 2021.

Setting. Features are vertically partitioned: party A holds ``X_A`` (n x d_A), party B holds
``X_B`` (n x d_B) and the labels ``y``; rows are aligned. Both fit one logistic model
``p = sigmoid(X_A w_A + X_B w_B + b)`` by mini-batch gradient descent. Each party has its own
Paillier key pair. The expensive products are done by the owner of the (plaintext, sparse)
data on ciphertexts under the *other* party's key, so their cost is one short exponentiation
per non-zero of the data (a modular multiplication for 0/1 one-hot features).

Per mini-batch ``S`` (B draws the batches with its CSPRNG and tells A the row indices), for
each party P with peer Q:

1. **HE -> SS product.** P holds ``[w_P]_Q``, its weights encrypted under Q's key, and computes
   ``[X_P[S] w_P]_Q`` homomorphically; it packs the results into as few ciphertexts as fit,
   adds a fresh statistical mask ``R`` (``sigma = 40`` bits) and fresh encryption randomness,
   and sends them to Q, who decrypts ``t = X_P[S] w_P + R``. Now ``z_P = t - R`` is additively
   shared over the integers (P holds ``-R``, Q holds ``t``); ``z = z_A + z_B`` likewise.
2. **Sigmoid.** ``sigmoid(z) ~ 1/2 + z/4`` (linear, the default: local on shares) or the cubic
   ``q0 + q1 z + q3 z^3`` (A sends ``[a], [a^2], [a^3]`` of its share ``a`` under A's key, B
   evaluates ``(a + b)^3`` homomorphically and returns it masked as in step 1). B subtracts
   ``y``: ``e = yhat - y`` is shared.
3. **Gradient.** Q sends ``[-eta <e>_Q]_Q`` (``eta = lr / |S|``); P adds its own share
   homomorphically and computes ``[w_P] <- [w_P] + X_P[S]^T [-eta e]_Q``: one exponentiation
   per non-zero again, and no decryption at all.
4. **Output.** P masks ``[w_P]_Q``, Q decrypts and returns the masked values, P removes the
   mask: A learns ``w_A``, B learns ``w_B`` and the intercept.

Deviation from the paper, for speed: the paper keeps ``w_P`` additively shared and has Q
re-encrypt its share every batch (d_P encryptions per batch). Here Q's share is kept only as
the ciphertext ``[w_P]_Q`` at P and updated homomorphically, with P's share identically zero;
the weights stay hidden from both parties exactly as before (P has ciphertexts only, Q sees
nothing of ``w_P``), and per batch the crypto cost is O(|S| + nnz(X[S])) instead of O(d).
The L2 penalty needs one rescaling of ``w_P``, done once per epoch with the same mask-and-
decrypt step plus d_P fresh encryptions by Q.

Fixed point. Features are integers (``x_frac_bits = 0``, chosen automatically when every
value is an integer, e.g. one-hot data) or ``round(x 2^f)``; the residual ``e`` has ``f``
fractional bits (``frac_bits``, default 16), ``eta`` has ``fs = 24 + ceil(log2(batch/lr))``;
each party floors its share of ``eta e`` (``fs + f`` bits) to ``fw = fs + f - 20`` bits before it
enters the weights, which thus have ``F = fw + x_frac_bits`` fractional bits: the floors cost under
``lr 2^-f / 8`` per weight and step (``2^-fw <= lr 2^-(f+4) / batch``), and the products ``z``
carry ``20`` fewer bits, so more of them fit one packed ciphertext. The products ``z`` are
truncated likewise (floor of each integer share: at most one unit in the last place per share,
never a wrap-around failure, since the shares are integers rather than ring elements). Assumed bounds, needed for the masks: ``|X_P w_P| <
2^16`` and ``|w| < 2^16``.

Threat model: semi-honest, two parties. Every value a party receives is (a) a Paillier
ciphertext under the other party's key, or (b) a ciphertext under its own key whose plaintext
slots are ``v + 2^B + U`` with ``U`` uniform in ``[0, 2^(B + 40))`` and ``|v| < 2^B``, so
statistically within ``2^-40`` of independent of ``v``, or (c) public metadata. Leakage: A and B
learn both parties' numbers of rows and columns, whether the other's features are
integer-valued (the encoding scale), the hyperparameters and the batch row indices; neither
learns anything about the other's feature values or sparsity pattern, the labels, the shared
products, the residuals or the other's weights. At the end A learns ``w_A`` and B learns
``w_B`` and the intercept (the estimator, running both roles, assembles both). Only with
``report_loss=True`` (off by default) B also learns each epoch's mean squared residual
``mean_S mean_{i in S} e_i^2`` (progress monitoring): one number per epoch.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
from gmpy2 import mpz
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from mpcml.csprng import Csprng
from mpcml.floors import check_key_bits
from mpcml.local import run_local
from mpcml.he import MaskedPacking, statistical_masks
from mpcml.paillier import MASK_SIGMA, EncryptedArray, PrivateKey, PublicKey, generate_keypair, random_masks
from mpcml.party import Party

from .common import CommunicationReport, check_int, check_labels, check_matrix, check_number, check_vertical_parts

VALUE_BITS = 16
STEP_PRECISION_BITS = 24
STEP_TRUNCATION_BITS = 20
DECAY_BITS = 30
SIGMOIDS = ("linear", "cubic")
# Least-squares fit of the logistic function by q0 + q1 z + q3 z^3 on [-8, 8] (numpy lstsq).
CUBIC = (0.5, 0.15012, -0.001593)
_COEF_BITS = 24


@dataclass(frozen=True)
class CaesarParams:
    """Public training parameters; both parties must hold the same values."""

    learning_rate: float = 0.1
    epochs: int = 10
    batch_size: int = 64
    l2: float = 0.0
    sigmoid: str = "linear"
    fit_intercept: bool = True
    shuffle: bool = True
    key_bits: int = 2048
    frac_bits: int = 16
    report_loss: bool = False

    def check(self) -> "CaesarParams":
        checked = {
            "learning_rate": check_number("learning_rate", self.learning_rate, high=1024),
            "epochs": check_int("epochs", self.epochs, 1),
            "batch_size": check_int("batch_size", self.batch_size, 1),
            "l2": check_number("l2", self.l2, positive=False),
            "key_bits": check_key_bits("key_bits", self.key_bits),
            "frac_bits": check_int("frac_bits", self.frac_bits, 8, 32),
        }
        for name, value in checked.items():  # numpy scalars become plain numbers for the wire
            object.__setattr__(self, name, value)
        if self.l2 * self.learning_rate >= 1:
            raise ValueError(f"l2 must satisfy l2 * learning_rate < 1, got l2={self.l2!r}")
        if self.sigmoid not in SIGMOIDS:
            raise ValueError(f"sigmoid must be one of {SIGMOIDS}, got {self.sigmoid!r}")
        if not isinstance(self.report_loss, bool):
            raise TypeError(f"report_loss must be a bool, got {type(self.report_loss).__name__}")
        return self

    def step_bits(self, batch_size: int) -> int:
        """Fractional bits of ``eta = lr / batch`` so that its integer keeps >= 24 significant bits."""
        return STEP_PRECISION_BITS + max(0, math.ceil(math.log2(batch_size / self.learning_rate)))


# --- plaintext reference ----------------------------------------------------------------------


def sigmoid_approx(z: np.ndarray, kind: str) -> np.ndarray:
    """The polynomial the protocol evaluates in place of the logistic function (``"logistic"``: exact, plaintext only)."""
    if kind == "logistic":
        return 1.0 / (1.0 + np.exp(-z))
    if kind == "linear":
        return 0.5 + z / 4.0
    q0, q1, q3 = CUBIC
    return q0 + q1 * z + q3 * z**3


def epoch_batches(n_rows: int, batch_size: int, order: np.ndarray | None = None) -> list[np.ndarray]:
    """Consecutive batches of ``order`` (default ``0..n-1``); the last may be shorter."""
    order = np.arange(n_rows) if order is None else np.asarray(order)
    return [order[i : i + batch_size] for i in range(0, n_rows, batch_size)]


def reference_fit(
    blocks: Sequence[Any], y: np.ndarray, params: CaesarParams, orders: Sequence[np.ndarray] | None = None,
    losses: list[float] | None = None,
) -> tuple[list[np.ndarray], float]:
    """The exact algorithm of the protocol in floating point: ``(per-block weights, intercept)``.

    Per batch ``S``: ``e = sigmoid_approx(X[S] w + b) - y[S]``, ``w -= lr/|S| X[S]^T e`` (and
    ``b`` likewise); after each epoch ``w *= (1 - lr l2)^(batches)`` (the intercept is not
    penalised). ``orders[k]`` is the row order of epoch ``k`` (default: ``0..n-1``). If ``losses``
    is a list, each epoch's mean over batches of ``mean(e^2)`` is appended (what ``report_loss`` shows).
    """
    mats = [sp.csr_matrix(b, dtype=np.float64) if sp.issparse(b) else np.asarray(b, dtype=np.float64) for b in blocks]
    y = np.asarray(y, dtype=np.float64)
    weights = [np.zeros(m.shape[1]) for m in mats]
    intercept = 0.0
    n = y.shape[0]
    for epoch in range(params.epochs):
        batches = epoch_batches(n, params.batch_size, None if orders is None else orders[epoch])
        squares = []
        for rows in batches:
            z = sum(m[rows] @ w for m, w in zip(mats, weights)) + intercept
            e = sigmoid_approx(z, params.sigmoid) - y[rows]
            squares.append(float(np.mean(e * e)))
            eta = params.learning_rate / len(rows)
            for m, w in zip(mats, weights):
                w -= eta * (m[rows].T @ e)
            if params.fit_intercept:
                intercept -= eta * float(e.sum())
        if params.l2:
            decay = (1.0 - params.learning_rate * params.l2) ** len(batches)
            for w in weights:
                w *= decay
        if losses is not None:
            losses.append(float(np.mean(squares)))
    return weights, intercept


def weight_error_bound(blocks: Sequence[Any], weights: Sequence[np.ndarray], params: CaesarParams, n_rows: int) -> float:
    """Bound on ``|protocol weights - reference_fit weights|`` from the fixed-point encoding.

    Per step the residual is off by at most 4 units of ``2^-f`` (two floored shares, the /4 and
    the label) plus the rounding of non-integer features, ``d 2^-(f+1) max|w|``; a step moves each weight by at
    most ``lr max|X|`` times that, flooring the two shares of ``eta e`` to the weights' scale adds
    under ``lr max|X| 2^-f / 8`` per step, and one more unit covers the weights' own rounding.
    """
    unit = 2.0**-params.frac_bits
    dense = [b.toarray() if sp.issparse(b) else np.asarray(b) for b in blocks]
    max_x = max(max(float(np.abs(b).max()) for b in dense), 1.0)
    rounded = sum(b.shape[1] for b in dense if not np.all(b == np.rint(b)))  # integer features are exact
    w_max = max(float(np.abs(w).max()) for w in weights) + 1.0
    steps = params.epochs * -(-n_rows // params.batch_size)
    return steps * params.learning_rate * max_x * (8 * unit + unit / 8 + rounded * unit / 2 * w_max) + unit


# --- integer encodings and masked packing -------------------------------------------------------


def encode_features(x: Any, frac_bits: int, name: str = "X") -> tuple[sp.csr_matrix, int]:
    """``(CSR int64 matrix, x_frac_bits)``: integers as they are, anything else as ``round(x 2^frac_bits)``."""
    mat = check_matrix(x, name, allow_sparse=True)
    mat = sp.csr_matrix(mat, dtype=np.float64)
    mat.eliminate_zeros()
    data = mat.data
    fx = 0 if np.all(data == np.rint(data)) else frac_bits
    scaled = np.rint(np.ldexp(data, fx))
    if scaled.size and np.max(np.abs(scaled)) >= 2.0**62:
        raise ValueError(f"{name} has values too large for fixed point at {fx} fractional bits")
    out = sp.csr_matrix((scaled.astype(np.int64), mat.indices, mat.indptr), shape=mat.shape)
    out.sort_indices()
    return out, fx


def pack_masked(enc: EncryptedArray, bound_bits: int, rng: Csprng) -> tuple[dict, np.ndarray]:
    """Holder's half of HE -> integer shares: ``(message for the key owner, my shares)``.

    For ``|v_j| < 2^B`` (``B = bound_bits``) the key owner will decrypt ``t_j = v_j + R_j`` with
    ``R_j = 2^B + U_j``, ``U_j`` uniform in ``[0, 2^(B + sigma))``; the holder's share is
    ``-R_j``, so ``t_j - R_j = v_j`` exactly over the integers. The shared "pack, mask, send,
    unpack" routine :class:`mpcml.he.MaskedPacking` packs as many values per ciphertext as fit and
    adds the packed masks as a fresh ``"subgroup"`` encryption, so the key owner sees fresh
    encryptions of masked values only (``mask_to_share`` keeps shares mod 2^64; these stay exact).
    """
    count = enc.size
    masks = statistical_masks(rng, count, bound_bits, signed=True)
    sealed = MaskedPacking.for_values(bound_bits, signed=True).seal(enc.public_key, list(enc.ciphertexts.flat), masks)
    message = {"kind": "masked", "count": count, "bound_bits": bound_bits, "enc": sealed.to_wire()}
    return message, -np.array(masks, dtype=object)


def unpack_masked(private_key: PrivateKey, message: Any, count: int, bound_bits: int) -> np.ndarray:
    """Key owner's half of :func:`pack_masked`: the masked integers ``t_j`` (object array), range-checked."""
    if not isinstance(message, dict) or message.get("kind") != "masked":
        raise ValueError("expected a masked-values message from the peer")
    if message.get("count") != count or message.get("bound_bits") != bound_bits:
        raise ValueError(f"peer sent {message.get('count')} masked values of {message.get('bound_bits')} bits, "
                         f"expected {count} of {bound_bits}")
    layout = MaskedPacking.for_values(bound_bits, signed=True)
    enc = EncryptedArray.from_wire(private_key.public_key, message["enc"])
    if enc.size != -(-count // layout.slots(private_key.public_key)):
        raise ValueError(f"peer sent {enc.size} packed ciphertexts, expected {-(-count // layout.slots(private_key.public_key))}")
    return np.array(layout.open(private_key, enc, count), dtype=object)


# --- the two roles --------------------------------------------------------------------------------


def _send_public(party: Party, peer: str, public_key: PublicKey, rows: int, cols: int, fx: int, params: CaesarParams) -> dict:
    party.send(peer, {"kind": "setup", "pk": public_key.to_wire(), "rows": rows, "cols": cols, "x_frac_bits": fx,
                      "params": asdict(params)})
    theirs = party.recv(peer)
    if not isinstance(theirs, dict) or theirs.get("kind") != "setup":
        raise ValueError(f"peer {peer!r} did not send a setup message")
    if theirs.get("params") != asdict(params):
        raise ValueError(f"peer {peer!r} uses different training parameters: {theirs.get('params')} vs {asdict(params)}")
    if theirs.get("rows") != rows:
        raise ValueError(f"peer {peer!r} has {theirs.get('rows')} rows, this party has {rows}: rows must be aligned")
    cols, their_fx = theirs.get("cols"), theirs.get("x_frac_bits")
    if not isinstance(cols, int) or cols < 1 or their_fx not in (0, params.frac_bits):
        raise ValueError(f"peer {peer!r} sent malformed dimensions")
    return {"pk": PublicKey.from_wire(theirs["pk"]), "cols": cols, "fx": their_fx}


class _Trainer:
    """One party's state: its data, its encrypted weights under the peer's key, the peer's view."""

    def __init__(self, party: Party, peer: str, x: Any, params: CaesarParams, is_b: bool) -> None:
        party.check_peer(peer)
        self.party, self.peer, self.params, self.is_b = party, peer, params.check(), is_b
        self.x, self.fx = encode_features(x, params.frac_bits, "X_B" if is_b else "X_A")
        self.rows, self.cols = self.x.shape
        self.fs = params.step_bits(params.batch_size)
        self.fe = params.frac_bits
        self.fw = self.fs + self.fe - STEP_TRUNCATION_BITS

    def setup(self) -> None:
        self.public_key, self.private_key = generate_keypair(self.params.key_bits)
        other = _send_public(self.party, self.peer, self.public_key, self.rows, self.cols, self.fx, self.params)
        self.peer_key, self.peer_cols, self.peer_fx = other["pk"], other["cols"], other["fx"]
        self.private_key.prepare()
        self.peer_key.prepare("subgroup")
        self.weight_bits = self.fw + self.fx
        # Enc(0) with randomness 1: P knows it is zero anyway, and whatever P sends is rerandomised.
        self.weights = EncryptedArray(self.peer_key, np.full(self.cols, mpz(1), dtype=object), 0)

    def _weight_bound(self, fx: int) -> int:
        """Bits of ``|w|`` at the weight scale ``F`` of a party with feature scale ``fx``."""
        return VALUE_BITS + self.fw + fx

    def _bound(self, fx: int) -> int:
        """Bits of ``|X_P w_P|`` at scale ``fx + F`` for a party with feature scale ``fx``."""
        return VALUE_BITS + self.fw + 2 * fx

    def product_shares(self, rows: np.ndarray) -> np.ndarray:
        """Integer shares of ``z = X_A w_A + X_B w_B`` over ``rows`` at scale ``2^fe``, divided by 4 if linear."""
        mine, theirs = self._bound(self.fx), self._bound(self.peer_fx)
        products = self.weights.rmatmul(self.x[rows])
        message, own = pack_masked(products, mine, self.party.rng)
        self.party.send(self.peer, message)
        other = unpack_masked(self.private_key, self.party.recv(self.peer), len(rows), theirs)
        extra = 2 if self.params.sigmoid == "linear" else 0
        return (own >> (mine - VALUE_BITS - self.fe + extra)) + (other >> (theirs - VALUE_BITS - self.fe + extra))

    def cubic_shares(self, z: np.ndarray) -> np.ndarray:
        """Shares of ``q0 + q1 z + q3 z^3`` at scale ``2^fe`` (A's key holds the powers of A's share)."""
        fe, q = self.fe, [round(c * 2**_COEF_BITS) for c in CUBIC]
        out_bits = 3 * fe + _COEF_BITS
        bound = out_bits + 3 * VALUE_BITS
        if not self.is_b:
            powers = self.private_key.encrypt_int(np.stack([z, z * z, z * z * z]))
            self.party.send(self.peer, {"kind": "powers", "enc": powers.to_wire()})
            t = unpack_masked(self.private_key, self.party.recv(self.peer), len(z), bound)
            return t >> (out_bits - fe)
        message = self.party.recv(self.peer)
        if not isinstance(message, dict) or message.get("kind") != "powers":
            raise ValueError(f"peer {self.peer!r} did not send the encrypted powers")
        a1, a2, a3 = EncryptedArray.from_wire(self.peer_key, message["enc"])
        if a1.shape != z.shape:
            raise ValueError(f"peer {self.peer!r} sent powers of shape {a1.shape}, expected {z.shape}")
        b = z
        lin = q[1] << (2 * fe)
        total = a3.mul(q[2] * np.ones_like(b)) + a2.mul(3 * q[2] * b) + a1.mul(3 * q[2] * b * b + lin)
        total = total + (q[2] * b * b * b + lin * b + (q[0] << 3 * fe))
        message, own = pack_masked(total, bound, self.party.rng)
        self.party.send(self.peer, message)
        return own >> (out_bits - fe)

    def gradient_step(self, rows: np.ndarray, e_share: np.ndarray) -> None:
        """``[w_P] += X_P[rows]^T [-eta e]`` with the peer's half of ``-eta e`` encrypted under its key.

        Each party's share of ``-eta e`` is floored to the weights' scale before it is encrypted or added.
        """
        eta = round(self.params.learning_rate / len(rows) * 2**self.fs)
        scaled = (-eta * e_share) >> STEP_TRUNCATION_BITS
        self.party.send(self.peer, {"kind": "residual", "enc": self.private_key.encrypt_int(scaled).to_wire()})
        message = self.party.recv(self.peer)
        if not isinstance(message, dict) or message.get("kind") != "residual":
            raise ValueError(f"peer {self.peer!r} did not send its encrypted residual share")
        theirs = EncryptedArray.from_wire(self.peer_key, message["enc"])
        if theirs.shape != (len(rows),):
            raise ValueError(f"peer {self.peer!r} sent {theirs.shape} residual values, expected {len(rows)}")
        batch = self.x[rows]
        touched = np.unique(batch.indices)  # only columns with a non-zero in the batch change: cost ~ nnz, not d
        updated = self.weights[touched] + (theirs + scaled).matmul(batch[:, touched])
        self.weights.ciphertexts[touched] = updated.ciphertexts
        if self.params.report_loss:
            self.loss_terms = self.loss_terms + int((e_share * scaled).sum())
            cross = theirs.mul(e_share).sum()
            self.loss_cross = cross if self.loss_cross is None else self.loss_cross + cross

    def _received_sum(self, kind: str, bound: int) -> int:
        """Decrypt the peer's one-ciphertext message ``kind`` (under this party's key)."""
        message = self.party.recv(self.peer)
        if not isinstance(message, dict) or message.get("kind") != kind or message.get("bound_bits") != bound:
            raise ValueError(f"peer {self.peer!r} did not send the {kind} message")
        enc = EncryptedArray.from_wire(self.public_key, message["enc"])
        if enc.shape != ():
            raise ValueError(f"peer {self.peer!r} sent {enc.shape} values in the {kind} message, expected one")
        return int(self.private_key.decrypt_int(enc)[()])

    def reveal_loss(self, batches: int) -> float | None:
        """B learns the epoch's mean squared residual ``mean_S mean_{i in S} e_i^2`` (A learns nothing).

        With ``e = a + b`` (A's and B's shares) and ``s_P ~ -eta e_P / 2^20`` the floored steps,
        ``sum eta e^2 / 2^20 ~ -sum (a + b)(s_A + s_B)``. Each party holds its own ``sum e_P s_P``
        and ``[sum e_P s_Q]_Q``; B masks ``[sum b s_A]_A`` for A, who adds it and its own terms to
        ``[sum a s_B]_B`` and returns that; B removes the mask and adds ``sum b s_B``.
        """
        share_bits = 3 * VALUE_BITS + self.fe + MASK_SIGMA + 2  # |e_P|, also after the cubic
        bound = 2 * share_bits + self.fs + self.rows.bit_length() + 2  # |sum e_P s_Q|
        if self.is_b:
            mask = (1 << bound) + random_masks(self.party.rng, 1, bound + MASK_SIGMA)[0]
            masked = (self.loss_cross + mask).rerandomize("subgroup")
            self.party.send(self.peer, {"kind": "masked_sum", "bound_bits": bound, "enc": masked.to_wire()})
            total = self._received_sum("loss_sum", bound) - mask + self.loss_terms
            scale = self.params.learning_rate * 2.0 ** (self.fs + 2 * self.fe - STEP_TRUNCATION_BITS) * batches
            return -total / scale
        masked = self._received_sum("masked_sum", bound)
        reply = (self.loss_cross + (masked + self.loss_terms)).rerandomize("subgroup")
        self.party.send(self.peer, {"kind": "loss_sum", "bound_bits": bound, "enc": reply.to_wire()})
        return None

    def decay(self, factor: float, keep_last: bool) -> None:
        """``[w_P] *= factor`` through one mask-and-decrypt round (the key owner re-encrypts its share)."""
        mult = np.full(self.cols, round(factor * 2**DECAY_BITS), dtype=object)
        if keep_last:
            mult[-1] = 1 << DECAY_BITS
        message, own = pack_masked(self.weights.mul(mult), self._weight_bound(self.fx) + DECAY_BITS, self.party.rng)
        self.party.send(self.peer, message)
        theirs = unpack_masked(self.private_key, self.party.recv(self.peer), self.peer_cols,
                               self._weight_bound(self.peer_fx) + DECAY_BITS)
        self.party.send(self.peer, {"kind": "share", "enc": self.private_key.encrypt_int(theirs >> DECAY_BITS).to_wire()})
        back = self.party.recv(self.peer)
        if not isinstance(back, dict) or back.get("kind") != "share":
            raise ValueError(f"peer {self.peer!r} did not send its re-encrypted share")
        enc = EncryptedArray.from_wire(self.peer_key, back["enc"])
        if enc.shape != (self.cols,):
            raise ValueError(f"peer {self.peer!r} sent {enc.shape} weights, expected {self.cols}")
        self.weights = enc + (own >> DECAY_BITS)

    def reveal(self) -> np.ndarray:
        """Mask ``[w_P]``, let the key owner decrypt it, unmask: P learns ``w_P`` (and serves the peer)."""
        message, own = pack_masked(self.weights, self._weight_bound(self.fx), self.party.rng)
        self.party.send(self.peer, message)
        theirs = unpack_masked(self.private_key, self.party.recv(self.peer), self.peer_cols, self._weight_bound(self.peer_fx))
        self.party.send(self.peer, {"kind": "opened", "values": [int(v) for v in theirs]})
        back = self.party.recv(self.peer)
        if not isinstance(back, dict) or back.get("kind") != "opened" or len(back.get("values", ())) != self.cols:
            raise ValueError(f"peer {self.peer!r} did not return the opened weights")
        values = np.array(back["values"], dtype=object) + own
        return np.array([float(v) / 2.0**self.weight_bits for v in values])

    def train(self, y: np.ndarray | None, progress: Callable[[str], None] | None) -> np.ndarray:
        self.setup()
        start = time.perf_counter()
        self.epoch_log: list[dict[str, float]] = []
        self.orders: list[np.ndarray] = []
        for epoch in range(self.params.epochs):
            began, traffic = time.perf_counter(), self.party.stats.bytes_sent + self.party.stats.bytes_received
            order = self._epoch_order()
            self.orders.append(order)
            batches = epoch_batches(self.rows, self.params.batch_size, order)
            self.loss_terms, self.loss_cross = 0, None
            for rows in batches:
                z = self.product_shares(rows)
                if self.params.sigmoid == "cubic":
                    z = self.cubic_shares(z)
                elif self.is_b:
                    z = z + (1 << (self.fe - 1))
                if self.is_b:
                    z = z - np.array([int(v) << self.fe for v in y[rows].astype(np.int64)], dtype=object)
                self.gradient_step(rows, z)
            if self.params.l2:
                self.decay((1.0 - self.params.learning_rate * self.params.l2) ** len(batches),
                           self.is_b and self.params.fit_intercept)
            loss = self.reveal_loss(len(batches)) if self.params.report_loss else None
            self.epoch_log.append({"seconds": time.perf_counter() - began,
                                   "bytes": self.party.stats.bytes_sent + self.party.stats.bytes_received - traffic})
            if loss is not None:
                self.epoch_log[-1]["loss"] = loss
            if progress is not None:
                shown = "" if loss is None else f"mean squared residual {loss:.5f}, "
                progress(f"caesar epoch {epoch + 1}/{self.params.epochs}: {len(batches)} batches, {shown}"
                         f"{time.perf_counter() - start:.1f}s elapsed, {self.party.stats.bytes_sent} bytes sent")
        return self.reveal()

    def _epoch_order(self) -> np.ndarray:
        if self.is_b:
            order = self.party.rng.permutation(self.rows) if self.params.shuffle else np.arange(self.rows)
            self.party.send(self.peer, {"kind": "order", "rows": order.astype(np.int64)})
            return order
        message = self.party.recv(self.peer)
        order = message.get("rows") if isinstance(message, dict) and message.get("kind") == "order" else None
        if not isinstance(order, np.ndarray) or order.shape != (self.rows,) or not np.array_equal(np.sort(order), np.arange(self.rows)):
            raise ValueError(f"peer {self.peer!r} sent an invalid batch order")
        return order


def _progress(verbose: bool) -> Callable[[str], None] | None:
    return (lambda line: print(line, file=sys.stderr, flush=True)) if verbose else None


def run_party_a(party: Party, peer: str, x: Any, params: CaesarParams) -> np.ndarray:
    """Role of party A (features only): returns ``w_A``."""
    return _Trainer(party, peer, x, params, False).train(None, None)


def run_party_b(party: Party, peer: str, x: Any, y: Any, params: CaesarParams, verbose: bool = False) -> dict:
    """Role of party B (features and labels): ``{"coef", "intercept", "epochs", "orders"}``.

    ``epochs`` lists, per epoch, its wall time and the bytes both parties exchanged in it;
    ``orders`` the row order of each epoch (public to both parties: B sent it to A).
    """
    trainer = _Trainer(party, peer, _with_intercept(x, params.fit_intercept), params, True)
    labels = check_labels(y, trainer.rows, binary=True)
    weights = trainer.train(labels, _progress(verbose))
    intercept = float(weights[-1]) if params.fit_intercept else 0.0
    return {"coef": weights[:-1] if params.fit_intercept else weights, "intercept": intercept,
            "epochs": trainer.epoch_log, "orders": trainer.orders}


def _with_intercept(x: Any, fit_intercept: bool) -> Any:
    if not fit_intercept:
        return x
    mat = check_matrix(x, "X_B", allow_sparse=True)
    ones = np.ones((mat.shape[0], 1))
    return sp.hstack([mat, ones], format="csr") if sp.issparse(mat) else np.hstack([mat, ones])


# --- estimator -----------------------------------------------------------------------------------


class CaesarLogisticRegression(ClassifierMixin, BaseEstimator):
    """Two-party vertical logistic regression with CAESAR (see the module docstring).

    ``fit([X_A, X_B], y)`` runs party A (``X_A``) and party B (``X_B``, ``y``) in one process;
    inputs may be dense or scipy.sparse. After ``fit``: ``coef_`` (1 x (d_A + d_B)),
    ``intercept_``, ``classes_``, ``communication_`` (bytes and rounds from ``party.stats``),
    ``epoch_seconds_`` and ``epoch_bytes_`` (per epoch, key generation and output excluded).
    ``verbose=True`` prints one progress line per epoch (epoch, elapsed time, bytes) to stderr;
    with ``report_loss=True`` B also learns, and shows, each epoch's mean squared residual
    (``epoch_loss_``): one number per epoch beyond the leakage of the module docstring.
    """

    def __init__(
        self, learning_rate: float = 0.1, epochs: int = 10, batch_size: int = 64, l2: float = 0.0,
        sigmoid: str = "linear", fit_intercept: bool = True, shuffle: bool = True, key_bits: int = 2048,
        frac_bits: int = 16, report_loss: bool = False, verbose: bool = False, timeout: float = 600.0,
    ) -> None:
        self.learning_rate, self.epochs, self.batch_size, self.l2 = learning_rate, epochs, batch_size, l2
        self.sigmoid, self.fit_intercept, self.shuffle, self.key_bits = sigmoid, fit_intercept, shuffle, key_bits
        self.frac_bits, self.report_loss, self.verbose, self.timeout = frac_bits, report_loss, verbose, timeout

    def _params(self) -> CaesarParams:
        return CaesarParams(
            float(self.learning_rate), self.epochs, self.batch_size, float(self.l2), self.sigmoid,
            bool(self.fit_intercept), bool(self.shuffle), self.key_bits, self.frac_bits, bool(self.report_loss),
        ).check()

    def fit(self, X: Sequence[Any], y: Any) -> "CaesarLogisticRegression":
        params = self._params()
        blocks = check_vertical_parts(X, "X", allow_sparse=True)
        if len(blocks) != 2:
            raise ValueError(f"X must hold exactly two blocks [X_A, X_B], got {len(blocks)}")
        x_a, x_b = blocks
        labels = check_labels(y, x_a.shape[0], binary=True)
        out = run_local(
            {"a": run_party_a, "b": run_party_b},
            {"a": ("b", x_a, params), "b": ("a", x_b, labels, params, bool(self.verbose))},
            timeout=self.timeout,
        )
        self.coef_ = np.concatenate([out["a"], out["b"]["coef"]])[None, :]
        self.intercept_ = np.array([out["b"]["intercept"]])
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = self.coef_.shape[1]
        self.communication_ = CommunicationReport.from_stats(out.stats)
        self.epoch_seconds_ = np.array([e["seconds"] for e in out["b"]["epochs"]])
        self.epoch_bytes_ = np.array([e["bytes"] for e in out["b"]["epochs"]], dtype=np.int64)
        if self.report_loss:
            self.epoch_loss_ = np.array([e["loss"] for e in out["b"]["epochs"]])
        return self

    def decision_function(self, X: Sequence[Any]) -> np.ndarray:
        check_is_fitted(self, "coef_")
        blocks = check_vertical_parts(X, "X", allow_sparse=True)
        widths = [b.shape[1] for b in blocks]
        if sum(widths) != self.n_features_in_:
            raise ValueError(f"X has {sum(widths)} columns in total, the model was fitted on {self.n_features_in_}")
        offsets = np.cumsum([0] + widths)
        coef = self.coef_[0]
        z = sum(np.asarray(b @ coef[lo:hi]).ravel() for b, lo, hi in zip(blocks, offsets[:-1], offsets[1:]))
        return z + self.intercept_[0]

    def predict_proba(self, X: Sequence[Any]) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)


def make_sparse_logistic(
    n_rows: int, n_cols: int, density: float, seed: int = 0, weight_scale: float = 1.0
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Test data only (numpy generator): 0/1 sparse features, a known model, labels ``~ Bernoulli``.

    Returns ``(X, y, true_weights)``; each row has about ``density * n_cols`` ones and the logit
    ``X w*`` is scaled to standard deviation ``2 weight_scale``.
    """
    gen = np.random.default_rng(seed)
    per_row = max(1, int(round(density * n_cols)))
    cols = gen.integers(0, n_cols, size=(n_rows, per_row))
    x = sp.csr_matrix((np.ones(n_rows * per_row), cols.ravel(), np.arange(0, n_rows * per_row + 1, per_row)),
                      shape=(n_rows, n_cols))
    x.sum_duplicates()
    x.data[:] = 1.0
    w = gen.normal(size=n_cols) * 2.0 * weight_scale / math.sqrt(per_row)
    logits = x @ w
    y = (gen.random(n_rows) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int64)
    return x, y, w
