"""PPPCA: privacy-preserving PCA over horizontally partitioned data, HE and SS variants.

Liu, Chen, Zheng et al., "Privacy preserving PCA for multiparty modeling" (2020). Holder ``i``
owns rows ``X_i`` and computes ``n_i``, ``s_i = X_i^T 1`` and ``G_i = X_i^T X_i``; only the sums
``n = sum n_i``, ``s = sum s_i``, ``G = sum G_i`` reach the data consumer, who forms the
covariance ``C = (G - s s^T / n) / (n - 1)`` (the correlation matrix with ``standardize``),
eigendecomposes it and sends the mean (and scale) and the top components back; every holder
then projects its own rows locally. The result equals centralised PCA up to fixed-point
rounding (``frac_bits`` fractional bits, default 32, error at most ``m * 2^-33`` per entry of
``G`` for ``m`` holders).

Variants of the secure sum:

- ``"he"`` (default): the consumer's Paillier key; the holders add their packed ciphertexts
  (:func:`mpcml.paillier.encrypt_packed`) along a chain ``holder 1 -> ... -> holder m -> consumer``.
  Exact integer sums, and no holder sees another's values (they are encrypted to the consumer).
- ``"ckks"``: the same chain with the consumer's CKKS key (:mod:`mpcml.ckks`, preset
  ``"default"``). Measured on breast_cancer and on 5 x 20,000 x 50 (docs/pca.md) it sends 20-50x
  more bytes than packed Paillier, is about 10x less precise (still ~1e-13 here) and caps every
  statistic at 2^19 in magnitude, which raw (unscaled) data exceeds: hence Paillier is the default.
- ``"ss"``: each holder splits its statistics into ``m`` additive shares over Z_2^64 (``m - 1``
  of them sent as 32-byte PRG seeds), each holder adds the shares it holds and sends that
  partial sum to the consumer, who adds the partial sums.

Threat model: semi-honest; the consumer does not collude with holders (a consumer together
with ``m - 1`` holders learns the last holder's statistics, which the sum then determines).
What each role learns: the consumer learns ``n``, ``s`` and ``G`` (so the mean and the
covariance) and everything derived (eigenvalues and eigenvectors); the holders learn the mean,
the scale (with ``standardize``), the selected components and their explained variances, plus
the holder count; nothing about each other's rows or statistics.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from mpcml import ckks, fixedpoint
from mpcml.csprng import SEED_BYTES, Csprng, new_seed
from mpcml.paillier import PackedEncryptedArray, PublicKey, decrypt_packed, encrypt_packed, generate_keypair
from mpcml.party import DEFAULT_TIMEOUT, Party
from protocols.common import CommunicationReport, check_horizontal_parts, check_matrix, check_party_ids, run_parties

VARIANTS = ("he", "ckks", "ss")
DEFAULT_VARIANT = "he"
DEFAULT_FRAC_BITS = 32
CKKS_PRESET = "default"
_SLOT_BITS = 100  # packing slot width: 32 fractional bits, |value| < 2^(66 - log2 m)


def check_n_components(n_components: Any, n_features: int | None = None) -> int | float | None:
    """``None`` (all), a positive int (at most ``n_features``) or a fraction in (0, 1) of explained variance."""
    if n_components is None:
        return None
    if isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool):
        if n_components < 1 or (n_features is not None and n_components > n_features):
            raise ValueError(f"n_components must be in [1, {n_features}] as an int, got {n_components}")
        return int(n_components)
    if isinstance(n_components, (float, np.floating)) and 0.0 < n_components < 1.0:
        return float(n_components)
    raise ValueError(f"n_components must be None, a positive int or a float in (0, 1), got {n_components!r}")


def local_statistics(X: np.ndarray) -> np.ndarray:
    """``[n_i, X^T 1, upper triangle of X^T X]`` as one float vector."""
    gram = X.T @ X
    return np.concatenate([[float(X.shape[0])], X.sum(axis=0), gram[np.triu_indices(X.shape[1])]])


def unpack_statistics(vector: np.ndarray, d: int) -> tuple[float, np.ndarray, np.ndarray]:
    n, s = float(vector[0]), vector[1 : d + 1]
    gram = np.zeros((d, d))
    gram[np.triu_indices(d)] = vector[d + 1 :]
    return n, s, gram + np.triu(gram, 1).T


def components_from_statistics(
    n: float, s: np.ndarray, gram: np.ndarray, n_components: int | float | None, standardize: bool
) -> dict[str, np.ndarray]:
    """The consumer's eigendecomposition; mirrors :class:`sklearn.decomposition.PCA` (full SVD)."""
    if n < 2:
        raise ValueError(f"PCA needs at least 2 rows in total, got {n:g}")
    mean = s / n
    cov = (gram - np.outer(s, mean)) / (n - 1)
    scale = np.ones_like(mean)
    if standardize:
        var = np.diag(cov).copy()
        constant = np.flatnonzero(var <= 1e-12 * max(1.0, float(np.max(np.abs(var)))))
        if constant.size:
            raise ValueError(f"features {constant.tolist()} have zero variance; cannot standardize them")
        scale = np.sqrt(var)
        cov = cov / np.outer(scale, scale)
    eigval, eigvec = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order].T
    total = eigval.sum()
    if total <= 0:
        raise ValueError("every feature has zero variance; PCA is undefined")
    ratio = eigval / total
    n_components = check_n_components(n_components, len(mean))
    if n_components is None:
        k = len(mean)
    elif isinstance(n_components, float):
        k = int(np.searchsorted(np.cumsum(ratio), n_components, side="right")) + 1
    else:
        k = n_components
    k = min(k, len(mean))
    signs = np.sign(eigvec[np.arange(len(eigvec)), np.argmax(np.abs(eigvec), axis=1)])
    return {
        "mean": mean, "scale": scale, "components": eigvec[:k] * signs[:k, None],
        "explained_variance": eigval[:k], "explained_variance_ratio": ratio[:k],
    }


def _check_roles(holders: Sequence[str], consumer: str, variant: str, frac_bits: int) -> tuple[str, ...]:
    holders = check_party_ids(holders, "holders")
    if len(holders) < 2:
        raise ValueError(f"holders must name at least two data holders, got {list(holders)}")
    if consumer in holders:
        raise ValueError(f"the consumer {consumer!r} cannot also be a holder")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    fixedpoint.check_frac_bits(frac_bits)
    return holders


def statistics_magnitude(X: np.ndarray) -> float:
    """``max |local_statistics(X)|`` without forming ``X^T X`` (``|G_ij| <= max_k G_kk``, Cauchy-Schwarz)."""
    return float(max(X.shape[0], np.max(np.abs(X.sum(axis=0))), np.max(np.einsum("ij,ij->j", X, X))))


def _check_statistics(magnitude: float, n_holders: int, frac_bits: int, variant: str) -> None:
    """Every statistic (and so every sum) must fit the value range with ``n_holders`` summands."""
    if variant == "ckks":
        limit, what = ckks.PRESETS[CKKS_PRESET].max_abs / n_holders, "the CKKS limit"
    else:
        limit, what = fixedpoint.max_abs(frac_bits) / n_holders, f"the fixed-point range at frac_bits={frac_bits}"
    if magnitude >= limit:
        raise ValueError(
            f"X has local statistics up to {magnitude:.4g}, beyond {what} "
            f"({limit:.4g} for {n_holders} holders); scale X (or lower frac_bits, or use another variant)"
        )


def pca_holder(
    party: Party, X: Any, *, holders: Sequence[str], consumer: str, variant: str = DEFAULT_VARIANT,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> dict[str, np.ndarray]:
    """Role of a data holder: contribute local statistics, receive the model, project own rows.

    Returns the model (``mean``, ``scale``, ``components``, ``explained_variance``,
    ``explained_variance_ratio``) and ``projection``, this holder's rows projected.
    """
    holders = _check_roles(holders, consumer, variant, frac_bits)
    X = check_matrix(X, f"X of holder {party.id!r}")
    stats = local_statistics(X)
    _check_statistics(float(np.max(np.abs(stats))), len(holders), frac_bits, variant)
    if variant == "ss":
        _ss_contribute(party, stats, holders, consumer, frac_bits)
    elif variant == "ckks":
        _ckks_contribute(party, stats, holders, consumer)
    else:
        _he_contribute(party, stats, holders, consumer, frac_bits)
    model = party.recv(consumer)
    keys = {"mean", "scale", "components", "explained_variance", "explained_variance_ratio"}
    if not isinstance(model, dict) or set(model) != keys or not all(isinstance(v, np.ndarray) for v in model.values()):
        raise ValueError(f"consumer {consumer!r} sent a malformed model")
    if model["components"].ndim != 2 or model["components"].shape[1] != X.shape[1]:
        raise ValueError(f"consumer {consumer!r} sent components of shape {model['components'].shape}")
    model["projection"] = ((X - model["mean"]) / model["scale"]) @ model["components"].T
    return model


def _ss_contribute(party: Party, stats: np.ndarray, holders: tuple[str, ...], consumer: str, frac_bits: int) -> None:
    encoded = fixedpoint.encode(stats, frac_bits, name="local statistics")
    others = [h for h in holders if h != party.id]
    mine = encoded.copy()
    for h in others:
        seed = new_seed()
        party.send(h, seed)
        mine -= Csprng(seed).random_uint64(encoded.shape)
    for h in others:
        seed = party.recv(h)
        if not (isinstance(seed, bytes) and len(seed) == SEED_BYTES):
            raise ValueError(f"holder {h!r} sent a malformed share seed")
        mine += Csprng(seed).random_uint64(encoded.shape)
    party.send(consumer, mine)


def _he_contribute(party: Party, stats: np.ndarray, holders: tuple[str, ...], consumer: str, frac_bits: int) -> None:
    public_key = PublicKey.from_wire(party.recv(consumer))
    mine = encrypt_packed(public_key, stats, frac_bits=frac_bits, slot_bits=_SLOT_BITS, max_summands=len(holders))
    previous, nxt = _chain_next(holders, party.id, consumer)
    if previous is not None:
        received = PackedEncryptedArray.from_wire(public_key, party.recv(previous))
        if received.length != mine.length:
            raise ValueError(f"holder {previous!r} sent statistics of length {received.length}, expected {mine.length}")
        mine = received + mine
    # the running sum includes this holder's fresh encryption, so its randomness is already fresh
    party.send(nxt, mine.to_wire())


def _chain_next(holders: tuple[str, ...], me: str, consumer: str) -> tuple[str | None, str]:
    """In the HE chain: who sends to ``me`` (``None`` for the first holder) and whom ``me`` sends to."""
    position = holders.index(me)
    previous = holders[position - 1] if position > 0 else None
    return previous, holders[position + 1] if position + 1 < len(holders) else consumer


def _ckks_contribute(party: Party, stats: np.ndarray, holders: tuple[str, ...], consumer: str) -> None:
    params = ckks.PRESETS[CKKS_PRESET]
    context = ckks.load_context(party.recv(consumer))
    mine = ckks.CKKSArray.encrypt(context, params, stats)
    previous, nxt = _chain_next(holders, party.id, consumer)
    if previous is not None:
        received = ckks.CKKSArray.from_wire(party.recv(previous), context, params)
        if received.shape != mine.shape:
            raise ValueError(f"holder {previous!r} sent statistics of shape {received.shape}, expected {mine.shape}")
        mine = received + mine
    party.send(nxt, mine.to_wire())


def pca_consumer(
    party: Party, *, holders: Sequence[str], consumer: str | None = None, n_components: int | float | None = None,
    standardize: bool = False, variant: str = DEFAULT_VARIANT, frac_bits: int = DEFAULT_FRAC_BITS,
    key_bits: int = 2048,
) -> dict[str, np.ndarray]:
    """Role of the data consumer: obtain the summed statistics, eigendecompose, send the model out.

    Returns the model (as sent to the holders) plus ``n_samples``.
    """
    holders = _check_roles(holders, consumer or party.id, variant, frac_bits)
    check_n_components(n_components)
    if variant == "ss":
        total = None
        for h in holders:
            part = party.recv(h)
            if not (isinstance(part, np.ndarray) and part.dtype == np.uint64 and part.ndim == 1):
                raise ValueError(f"holder {h!r} sent a malformed partial sum")
            if total is not None and part.shape != total.shape:
                raise ValueError(f"holder {h!r} sent a partial sum of length {part.size}, expected {total.size}")
            total = part.copy() if total is None else total + part
        vector = fixedpoint.decode(total, frac_bits)
    elif variant == "ckks":
        context, params = ckks.make_context(CKKS_PRESET)
        party.send_all(holders, ckks.public_context_bytes(context))
        vector = ckks.CKKSArray.from_wire(party.recv(holders[-1]), context, params).decrypt()
    else:
        public_key, private_key = generate_keypair(key_bits)
        party.send_all(holders, public_key.to_wire())
        packed = PackedEncryptedArray.from_wire(public_key, party.recv(holders[-1]))
        vector = decrypt_packed(private_key, packed)[0]
    d = int(round((-3 + np.sqrt(9 + 8 * (len(vector) - 1))) / 2))
    if 1 + d + d * (d + 1) // 2 != len(vector):
        raise ValueError(f"the summed statistics have length {len(vector)}, which matches no feature count")
    n, s, gram = unpack_statistics(vector, d)
    model = components_from_statistics(n, s, gram, n_components, standardize)
    party.send_all(holders, model)
    return {**model, "n_samples": np.array(n)}


class SecurePCA(TransformerMixin, BaseEstimator):
    """PPPCA as a scikit-learn transformer; every party runs in this process.

    ``fit(X)`` takes a list of per-holder row blocks ``[X_1, ..., X_m]`` (``m >= 2``, same
    columns); the consumer is a separate party. After ``fit``: ``components_``, ``mean_``,
    ``explained_variance_``, ``explained_variance_ratio_``, ``n_components_``, ``scale_``
    (ones unless ``standardize``), ``communication_`` and ``projections_`` (each holder's rows,
    projected locally by that holder). ``transform`` projects new rows with the public model.
    """

    def __init__(
        self, n_components: int | float | None = None, *, variant: str = DEFAULT_VARIANT, standardize: bool = False,
        frac_bits: int = DEFAULT_FRAC_BITS, key_bits: int = 2048, timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.n_components = n_components
        self.variant = variant
        self.standardize = standardize
        self.frac_bits = frac_bits
        self.key_bits = key_bits
        self.timeout = timeout

    def fit(self, X: Any, y: Any = None) -> "SecurePCA":
        blocks = check_horizontal_parts(X, "X")
        check_n_components(self.n_components, blocks[0].shape[1])
        holders = tuple(f"holder-{i}" for i in range(len(blocks)))
        common = {"holders": holders, "consumer": "consumer", "variant": self.variant, "frac_bits": self.frac_bits}
        _check_roles(holders, "consumer", self.variant, self.frac_bits)
        for block in blocks:
            _check_statistics(statistics_magnitude(block), len(blocks), self.frac_bits, self.variant)
        roles = {h: partial(pca_holder, **common) for h in holders}
        roles["consumer"] = partial(
            pca_consumer, n_components=self.n_components, standardize=self.standardize, key_bits=self.key_bits, **common
        )
        out = run_parties(roles, {h: (b,) for h, b in zip(holders, blocks)}, self.timeout)
        model = out["consumer"]
        self.mean_, self.scale_, self.components_ = model["mean"], model["scale"], model["components"]
        self.explained_variance_ = model["explained_variance"]
        self.explained_variance_ratio_ = model["explained_variance_ratio"]
        self.n_components_ = self.components_.shape[0]
        self.n_features_in_ = blocks[0].shape[1]
        self.n_samples_ = int(model["n_samples"])
        self.projections_ = [out[h]["projection"] for h in holders]
        self.communication_ = CommunicationReport.from_stats(out.stats)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "components_")
        X = check_matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was fitted on {self.n_features_in_}")
        return ((X - self.mean_) / self.scale_) @ self.components_.T
