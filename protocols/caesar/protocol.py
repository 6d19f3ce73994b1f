"""The two roles of CAESAR: party A (features) and party B (features and labels).

:func:`roles` is the one entry point the estimator, the party app and the tests use; both parties
run :func:`caesar_party`. The steps (numbered as in the code):

Set-up:
  1. Each party checks and encodes its block locally and generates its key pair of the scheme ``he``; they
     exchange public keys (each checks the peer's: that scheme, the size floor) and the digest of the options (B also the public batch-order seed).
  2. Each party computes its public facts over the agreed batches (:func:`~.config.block_facts`:
     rows, columns, feature scale, the quarter bits of its largest row norm and of its widest
     batch) and sends them.
  3. Both run the range analysis (:func:`~.config.plan`) on the two sets of facts: it refuses the
     run, or fixes every bound the masks and packed slots below are sized from.
Per mini-batch ``S``, for each party P with peer Q:
  4. HE -> shares: P computes ``[X_P[S] w_P]_Q``, packs and masks it (:func:`~.packing.pack_masked`);
     Q decrypts the masked values: ``z`` is additively shared over the integers.
  5. Sigmoid: ``1/2 + z/4`` locally (linear), or the cubic in one more round (A sends
     ``[a], [a^2], [a^3]`` of its share, B returns the masked cubic); B subtracts ``y``.
  6. Gradient: each party floors its share of ``-eta e`` to the weights' scale and sends it
     encrypted under its own key; P updates ``[w_P] += X_P[S]^T [-eta e]`` (no decryption).
Per epoch:
  7. L2 decay (one mask-and-decrypt round, Q re-encrypts its share), the loss for B when
     ``report_loss``, and a progress line.
Output:
  8. P masks ``[w_P]_Q`` and Q decrypts it: ``output="shared"`` stops here (P keeps ``-R``, Q
     keeps ``w_P + R``); otherwise Q returns the masked values and P learns ``w_P`` (``"own"``),
     and with ``"reveal"`` the parties then send each other their weights.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from gmpy2 import mpz

from mpcml.csprng import new_seed
from mpcml.he import MASK_SIGMA, EncryptedArray, generate_keypair, public_key_from_wire, random_masks
from mpcml.party import Party
from mpcml.schema import Array

from ..common import check_labels, check_matrix
from ..progress import Progress
from .config import (
    COEF_BITS,
    CUBIC,
    DECAY_BITS,
    STEP_TRUNCATION_BITS,
    CaesarConfig,
    Scales,
    batches,
    block_facts,
    column_hint,
    loss_bits,
    plan,
)
from .packing import MASKED, encode_features, pack_masked, unpack_masked
from .schemas import ENCRYPTED, FACTS, HELLO, MASKED_SUM, OPENED

logger = logging.getLogger(__name__)


def label_matrix(y: Any, n_rows: int, name: str) -> np.ndarray:
    """B's labels as an ``(n, K)`` 0/1 matrix: a 0/1 vector (one model) or one column per model (one-vs-rest)."""
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] > 1:
        if arr.shape[0] != n_rows or not np.all(np.isin(arr, (0.0, 1.0))):
            raise ValueError(f"{name} must be 0/1 with one row per row of X ({n_rows}), got shape {arr.shape}")
        return arr
    return check_labels(arr, n_rows, binary=True, name=name)[:, None]


def with_intercept(x: Any, name: str) -> Any:
    """``x`` with a column of ones appended (B's intercept)."""
    mat = check_matrix(x, name, allow_sparse=True)
    ones = np.ones((mat.shape[0], 1))
    return sp.hstack([mat, ones], format="csr") if sp.issparse(mat) else np.hstack([mat, ones])


def encoded_blocks(config: CaesarConfig, blocks: Sequence[Any]) -> dict[str, tuple[sp.csr_matrix, int]]:
    """``{A: (X_A, fx_A), B: (X_B with its intercept column, fx_B)}`` encoded as the parties encode them."""
    x_a, x_b = blocks
    if config.fit_intercept:
        x_b = with_intercept(x_b, "X_B")
    return {config.features: encode_features(x_a, config.frac_bits, "X_A"),
            config.labels: encode_features(x_b, config.frac_bits, "X_B")}


class _Trainer:
    """One party's state: its encoded block, its weights encrypted under the peer's key, the agreed scales."""

    def __init__(self, party: Party, config: CaesarConfig, X: Any, y: Any, progress: Progress | None) -> None:
        if party.id not in (config.features, config.labels):
            raise ValueError(f"party {party.id!r} is neither the features party {config.features!r} "
                             f"nor the labels party {config.labels!r}")
        self.party, self.config, self.progress = party, config, progress
        self.is_b = party.id == config.labels
        self.peer = config.other(party.id)
        party.check_peer(self.peer)
        name = f"X of party {party.id!r}"
        raw = check_matrix(X, name, allow_sparse=True)
        if self.is_b:
            self.y = label_matrix(y, raw.shape[0], f"y of party {party.id!r}")
        elif y is not None:
            raise ValueError(f"party {party.id!r} holds features only; y must be None")
        self.hint = column_hint(raw)
        self.x, self.fx = encode_features(with_intercept(raw, name) if self.is_b and config.fit_intercept else raw,
                                          config.frac_bits, name)
        self.rows, self.cols = self.x.shape
        self.fe, self.fs, self.fw = config.frac_bits, config.step_bits, config.weight_frac_bits

    # --- 1.-3. set-up ----------------------------------------------------------------------------

    def setup(self, seed: bytes | None) -> None:
        config = self.config
        # 1. keys, the options' digest, the batch-order seed (B's)
        self.public_key, self.private_key = generate_keypair(config.he, config.key_bits)
        if self.is_b:
            seed = seed if seed is not None else (config.seed or new_seed())
        elif seed is not None:
            raise ValueError(f"the batch-order seed is drawn by the labels party {config.labels!r}, not {self.party.id!r}")
        self.party.send(self.peer, {"pk": self.public_key.to_wire(), "digest": config.digest(), "seed": seed})
        hello = self.party.recv(self.peer, expect=HELLO, what="set-up keys")
        if hello["digest"] != config.digest():
            raise ValueError(f"party {self.peer!r} uses different training parameters (another options digest); "
                             f"start both parties with the same options: {config.options()}")
        self.peer_key = public_key_from_wire(hello["pk"], config.he)
        self.seed = seed if self.is_b else hello["seed"]
        if self.seed is None:
            raise ValueError(f"party {self.peer!r} sent no batch-order seed")
        # 2. public facts over the agreed batches
        self.schedule = batches(config, self.seed, self.rows)
        mine = block_facts(self.x, self.fx, self.schedule, self.y.shape[1] if self.is_b else 0)
        self.party.send(self.peer, mine)
        theirs = self.party.recv(self.peer, expect=FACTS, what="set-up facts")
        if theirs["x_frac_bits"] not in (0, self.fe):
            raise ValueError(f"party {self.peer!r} announced feature scale {theirs['x_frac_bits']}, "
                             f"expected 0 or frac_bits={self.fe}")
        # 3. the range analysis
        self.facts = {self.party.id: mine, self.peer: theirs}
        self.scales: Scales = plan(config, self.facts, {self.party.id: self.hint})
        if self.scales.growth > 1 and self.is_b:
            logger.info("%s (the range analysis still bounds every value)", self.scales.divergence(config))
        self.outputs = self.facts[config.labels]["outputs"]
        self.peer_cols, self.peer_fx = theirs["cols"], theirs["x_frac_bits"]
        self.private_key.prepare()
        self.peer_key.prepare("subgroup")
        # Enc(0) with randomness 1: P knows it is zero anyway, and whatever P sends is rerandomised.
        self.weights = EncryptedArray(self.peer_key, np.full((self.cols, self.outputs), mpz(1), dtype=object), 0)

    def _product_bits(self, party: str, fx: int) -> int:
        """Bits of ``|X_P w_P|`` at scale ``fw + 2 fx`` (what P packs in step 4)."""
        return self.scales.product_bits[party] + self.fw + 2 * fx

    def _weight_bits(self, fx: int) -> int:
        """Bits of ``|w|`` at the weight scale ``F = fw + fx`` of a party with feature scale ``fx``."""
        return self.scales.weight_bits + self.fw + fx

    # --- 4.-6. one mini-batch ------------------------------------------------------------------------

    def product_shares(self, rows: np.ndarray) -> np.ndarray:
        """Step 4: integer shares of ``z = X_A w_A + X_B w_B`` over ``rows`` at scale ``2^f`` (divided by 4 if linear)."""
        mine, theirs = self._product_bits(self.party.id, self.fx), self._product_bits(self.peer, self.peer_fx)
        products = self.weights.rmatmul(self.x[rows])
        message, own = pack_masked(products, mine, self.party.rng)
        self.party.send(self.peer, message)
        other = unpack_masked(self.private_key, self.party.recv(self.peer, expect=MASKED, what="masked products"),
                              products.size, theirs)
        extra = 2 if self.config.sigmoid == "linear" else 0
        shape = products.shape
        return ((own.reshape(shape) >> (self.fw + 2 * self.fx - self.fe + extra))
                + (other.reshape(shape) >> (self.fw + 2 * self.peer_fx - self.fe + extra)))

    def cubic_shares(self, z: np.ndarray) -> np.ndarray:
        """Step 5 (cubic): shares of ``q0 + q1 z + q3 z^3`` at scale ``2^f`` (A's key holds the powers of A's share)."""
        fe, q = self.fe, [round(c * 2**COEF_BITS) for c in CUBIC]
        out_bits = 3 * fe + COEF_BITS
        bound = self.scales.cubic_bits + out_bits
        if not self.is_b:
            powers = self.private_key.encrypt_int(np.stack([z, z * z, z * z * z]))
            self.party.send(self.peer, powers.to_wire())
            t = unpack_masked(self.private_key, self.party.recv(self.peer, expect=MASKED, what="masked cubic"),
                              z.size, bound)
            return t.reshape(z.shape) >> (out_bits - fe)
        powers = EncryptedArray.from_wire(self.peer_key, self.party.recv(self.peer, expect=ENCRYPTED, what="powers"))
        if powers.shape != (3, *z.shape):
            raise ValueError(f"party {self.peer!r} sent powers of shape {powers.shape}, expected {(3, *z.shape)}")
        a1, a2, a3 = powers[0], powers[1], powers[2]
        b = z
        lin = q[1] << (2 * fe)
        total = a3.mul(q[2] * np.ones_like(b)) + a2.mul(3 * q[2] * b) + a1.mul(3 * q[2] * b * b + lin)
        total = total + (q[2] * b * b * b + lin * b + (q[0] << 3 * fe))
        message, own = pack_masked(total, bound, self.party.rng)
        self.party.send(self.peer, message)
        return own.reshape(z.shape) >> (out_bits - fe)

    def gradient_step(self, rows: np.ndarray, e_share: np.ndarray) -> None:
        """Step 6: ``[w_P] += X_P[rows]^T [-eta e]`` with the peer's half of ``-eta e`` encrypted under its key.

        Each party's share of ``-eta e`` is floored to the weights' scale before it is encrypted or added.
        """
        eta = round(self.config.learning_rate / len(rows) * 2**self.fs)
        scaled = (-eta * e_share) >> STEP_TRUNCATION_BITS
        self.party.send(self.peer, self.private_key.encrypt_int(scaled).to_wire())
        theirs = EncryptedArray.from_wire(self.peer_key, self.party.recv(self.peer, expect=ENCRYPTED, what="residual shares"))
        if theirs.shape != scaled.shape:
            raise ValueError(f"party {self.peer!r} sent residual shares of shape {theirs.shape}, expected {scaled.shape}")
        batch = self.x[rows]
        touched = np.unique(batch.indices)  # only columns with a non-zero in the batch change: cost ~ nnz, not d
        updated = self.weights[touched] + (theirs + scaled).T.matmul(batch[:, touched]).T
        self.weights.ciphertexts[touched] = updated.ciphertexts
        if self.config.report_loss:
            self.loss_terms = self.loss_terms + int((e_share * scaled).sum())
            cross = theirs.mul(e_share).sum()
            self.loss_cross = cross if self.loss_cross is None else self.loss_cross + cross

    # --- 7. per epoch ----------------------------------------------------------------------------

    def reveal_loss(self, n_batches: int) -> float | None:
        """B learns the epoch's mean squared residual ``mean_S mean_{i in S, k} e_ik^2`` (A learns nothing).

        With ``e = a + b`` (A's and B's shares) and ``s_P ~ -eta e_P / 2^20`` the floored steps,
        ``sum eta e^2 / 2^20 ~ -sum (a + b)(s_A + s_B)``. Each party holds its own ``sum e_P s_P``
        and ``[sum e_P s_Q]_Q``; B masks ``[sum b s_A]_A`` for A, who adds it and its own terms to
        ``[sum a s_B]_B`` and returns that; B removes the mask and adds ``sum b s_B``.
        """
        bound = loss_bits(self.config, self.scales, self.rows)
        if self.is_b:
            mask = (1 << bound) + random_masks(self.party.rng, 1, bound + MASK_SIGMA)[0]
            masked = (self.loss_cross + mask).rerandomize("subgroup")
            self.party.send(self.peer, {"bound_bits": bound, "enc": masked.to_wire()})
            total = self._received_sum(bound) - mask + self.loss_terms
            scale = self.config.learning_rate * 2.0 ** (self.fs + 2 * self.fe - STEP_TRUNCATION_BITS)
            return -total / (scale * n_batches * self.outputs)
        masked = self._received_sum(bound)
        reply = (self.loss_cross + (masked + self.loss_terms)).rerandomize("subgroup")
        self.party.send(self.peer, {"bound_bits": bound, "enc": reply.to_wire()})
        return None

    def _received_sum(self, bound: int) -> int:
        """Decrypt the peer's one-ciphertext loss message (under this party's key)."""
        message = self.party.recv(self.peer, expect=MASKED_SUM, what="masked loss sum")
        enc = EncryptedArray.from_wire(self.public_key, message["enc"])
        if message["bound_bits"] != bound or enc.shape != ():
            raise ValueError(f"party {self.peer!r} sent a loss message of {message['bound_bits']} bits and shape "
                             f"{enc.shape}, expected {bound} bits and one value")
        return int(self.private_key.decrypt_int(enc)[()])

    def decay(self, factor: float) -> None:
        """Step 7: ``[w_P] *= factor`` through one mask-and-decrypt round (the key owner re-encrypts its share)."""
        mult = np.full((self.cols, self.outputs), round(factor * 2**DECAY_BITS), dtype=object)
        if self.is_b and self.config.fit_intercept:
            mult[-1] = 1 << DECAY_BITS
        message, own = pack_masked(self.weights.mul(mult), self._weight_bits(self.fx) + DECAY_BITS, self.party.rng)
        self.party.send(self.peer, message)
        masked = self.party.recv(self.peer, expect=MASKED, what="masked weights")
        theirs = unpack_masked(self.private_key, masked, self.peer_cols * self.outputs,
                               self._weight_bits(self.peer_fx) + DECAY_BITS)
        again = self.private_key.encrypt_int((theirs >> DECAY_BITS).reshape(self.peer_cols, self.outputs))
        self.party.send(self.peer, again.to_wire())
        enc = EncryptedArray.from_wire(self.peer_key, self.party.recv(self.peer, expect=ENCRYPTED, what="decayed weights"))
        if enc.shape != self.weights.shape:
            raise ValueError(f"party {self.peer!r} sent weights of shape {enc.shape}, expected {self.weights.shape}")
        self.weights = enc + (own >> DECAY_BITS).reshape(self.weights.shape)

    # --- 8. output -------------------------------------------------------------------------------

    def output(self) -> dict[str, Any]:
        """Step 8: mask ``[w_P]`` for the key owner; shared shares, or the opened weights (and the peer's)."""
        config = self.config
        message, own = pack_masked(self.weights, self._weight_bits(self.fx), self.party.rng)
        self.party.send(self.peer, message)
        masked = self.party.recv(self.peer, expect=MASKED, what="masked weights")
        theirs = unpack_masked(self.private_key, masked, self.peer_cols * self.outputs, self._weight_bits(self.peer_fx))
        if config.output == "shared":
            return {"weight_shares": {"own": own.reshape(self.cols, self.outputs).tolist(),
                                      "peer": theirs.reshape(self.peer_cols, self.outputs).tolist()}}
        self.party.send(self.peer, [int(v) for v in theirs])
        back = self.party.recv(self.peer, expect=OPENED, what="opened weights")
        if len(back) != own.size:
            raise ValueError(f"party {self.peer!r} returned {len(back)} weights, expected {own.size}")
        values = (np.array(back, dtype=object) + own).reshape(self.cols, self.outputs)
        weights = np.array([[float(v) for v in row] for row in values]) / 2.0 ** (self.fw + self.fx)
        out = self._split(weights)
        if config.output == "reveal":
            self.party.send(self.peer, weights)
            peer = self.party.recv(self.peer, expect=Array(np.float64, shape=(self.peer_cols, self.outputs)),
                                   what="revealed weights")
            a, b = (peer, weights) if self.is_b else (weights, peer)
            out = self._split(np.vstack([a, b]), intercept=True)
        return out

    def _split(self, weights: np.ndarray, intercept: bool | None = None) -> dict[str, Any]:
        """``coef`` ``(K, columns)`` and ``intercept`` ``(K,)`` from ``(rows, K)`` weights (B's last row is the intercept)."""
        has = self.is_b if intercept is None else intercept
        if has and self.config.fit_intercept:
            return {"coef": weights[:-1].T, "intercept": weights[-1]}
        return {"coef": weights.T, "intercept": np.zeros(self.outputs) if has else None}

    def public_model(self) -> dict[str, Any]:
        """What secure prediction with shared weights needs to know (all public)."""
        cols = {self.party.id: self.cols, self.peer: self.peer_cols}
        scales = {self.party.id: self.fw + self.fx, self.peer: self.fw + self.peer_fx}
        return {"cols": cols, "weight_frac_bits": scales, "weight_bits": self.scales.weight_bits,
                "outputs": self.outputs}

    # --- the run ---------------------------------------------------------------------------------

    def train(self, seed: bytes | None) -> dict[str, Any]:
        self.setup(seed)
        config = self.config
        log: list[dict[str, float]] = []
        for epoch, epoch_batches in enumerate(self.schedule):
            began, traffic = time.perf_counter(), self.party.stats.bytes_sent + self.party.stats.bytes_received
            self.loss_terms, self.loss_cross = 0, None
            for rows in epoch_batches:
                # 4. shares of z
                e = self.product_shares(rows)
                # 5. the sigmoid, minus the labels (B)
                if config.sigmoid == "cubic":
                    e = self.cubic_shares(e)
                elif self.is_b:
                    e = e + (1 << (self.fe - 1))
                if self.is_b:
                    e = e - np.array([[int(v) << self.fe for v in row] for row in self.y[rows].astype(np.int64)],
                                     dtype=object)
                # 6. the gradient step
                self.gradient_step(rows, e)
            # 7. decay, loss, progress
            if config.l2:
                self.decay((1.0 - config.learning_rate * config.l2) ** len(epoch_batches))
            loss = self.reveal_loss(len(epoch_batches)) if config.report_loss else None
            log.append({"seconds": time.perf_counter() - began,
                        "bytes": self.party.stats.bytes_sent + self.party.stats.bytes_received - traffic,
                        **({"loss": loss} if loss is not None else {})})
            if self.progress is not None:
                self.progress(epoch, **({"loss": loss} if loss is not None else {}))
        # 8. output
        result = {"coef": None, "intercept": None, "weight_shares": None, **self.output()}
        result.update(seed=self.seed, n_epochs=config.epochs, epochs=log, model=self.public_model())
        return result


def caesar_party(party: Party, X: Any = None, y: Any = None, *, config: CaesarConfig, seed: bytes | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
    """The role of either CAESAR party (steps 1-8 of the module docstring).

    The features party A passes its block ``X``; the labels party B its block and ``y`` (a 0/1
    vector, or an ``(n, K)`` 0/1 matrix for one-vs-rest) and optionally the batch-order ``seed``
    (default: from ``random_state``, else fresh from its CSPRNG). Returns ``{"coef", "intercept",
    "weight_shares", "seed", "n_epochs", "epochs", "model"}``: the weights this party learns
    (``coef`` ``(K, columns)``, B's ``intercept`` ``(K,)``; ``None`` where it learns none), its
    shares with ``output="shared"`` (``{"own": shares of its weights, "peer": of the peer's}``),
    the public seed, the epochs run, per epoch its seconds and bytes (and B's loss), and the
    public facts secure prediction needs.
    """
    return _Trainer(party, config, X, y, progress).train(seed)


def roles(config: CaesarConfig, data: Mapping[str, tuple[Any, Any]], *, seed: bytes | None = None,
          progress: Progress | None = None) -> tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]:
    """Both parties' roles and inputs for one training run: the same for the estimator, the app and the tests.

    ``data`` maps a party to its ``(X, y)`` (``y`` ``None`` for A); a party missing from ``data``
    (another process) gets no inputs here. ``seed`` goes to B; ``progress`` to B if B is here,
    else to A.
    """
    party_roles = {pid: partial(caesar_party, config=config) for pid in (config.features, config.labels)}
    inputs: dict[str, dict[str, Any]] = {pid: {} for pid in party_roles}
    for pid, (X, y) in data.items():
        inputs[pid].update(X=X, y=y)
    if seed is not None:
        inputs[config.labels]["seed"] = seed
    reporter = config.labels if config.labels in data else config.features
    inputs[reporter]["progress"] = progress
    return party_roles, inputs
