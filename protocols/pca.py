"""PPPCA: privacy-preserving PCA over horizontally partitioned data, HE and SS variants.

Liu, Chen, Zheng et al., "Privacy preserving PCA for multiparty modeling" (2020). Holder ``i``
owns rows ``X_i`` and computes ``n_i``, ``s_i = X_i^T 1`` and ``G_i = X_i^T X_i``; only the sums
``n = sum n_i``, ``s = sum s_i``, ``G = sum G_i`` reach the data consumer, who forms the
covariance ``C = (G - s s^T / n) / (n - 1)`` (the correlation matrix with ``standardize``),
eigendecomposes it and sends the mean (and scale) and the selected components back; every
holder then projects its own rows locally. The steps (numbered in the roles):

1. Each holder announces to the consumer its feature count and ``ceil(log2 max|statistic|)``.
2. The consumer picks the fractional bits ``f`` of the sums (``frac_bits``, lowered when the
   largest statistic times the holder count would not fit; refused below 8 bits), and sends
   ``f`` with its public key (``he``) or CKKS context (``ckks``).
3. The holders' statistics, each rounded to ``2^-f``, are summed securely (variants below).
4. The consumer eigendecomposes and sends each holder what ``holder_output`` allows.
5. Each holder projects its own rows.

The secure sums of ``he`` and ``ss`` are exact integer sums of the rounded statistics, so the
result equals :func:`reference_model` (the same rounding in float64) up to float rounding, and
centralised PCA up to ``m 2^-(f+1)`` per entry of ``G`` and ``s``.

Variants of the secure sum (step 3):

- ``"he"`` (default): the consumer's key of the scheme ``he`` (Okamoto–Uchiyama by default, or
  Paillier; each holder checks it with :func:`mpcml.he.public_key_from_wire`); the holders add their
  packed ciphertexts (:func:`mpcml.he.encrypt_packed`) along a chain ``holder 1 -> ... -> holder m -> consumer``.
  No holder sees another's values (they are encrypted to the consumer).
- ``"ckks"``: the same chain with the consumer's CKKS key (:mod:`mpcml.ckks`, preset
  ``"default"``): 20-50x more bytes than packed Paillier, about 10x less precise (approximate
  arithmetic) and every statistic capped at 2^19 in magnitude (docs/pca.md).
- ``"ss"``: the statistics are secret-shared over Z_2^64 among the *compute parties* on the
  session engine ``engine`` (:mod:`mpcml.engine`), summed locally, and each compute party sends
  its additive term of the sum to the consumer (:meth:`mpcml.tensor.SharedTensor.reveal_outside`).
  The compute parties are the holders themselves (``compute_parties=None``) or servers the
  holders input to (``compute_parties``; :func:`mpcml.session.send_input`: a 32-byte PRG seed to
  every server but the last, the rest to the last). A sum needs no products, so neither engine
  uses a dealer here (``beaver`` runs with :class:`mpcml.triples.NoTriples`):

  * ``engine="beaver"`` (default): additive shares among ``k >= 2`` compute parties; on the
    holders this is the original scheme (each holder sends every other a PRG seed of its share,
    one round, and its partial sum to the consumer). Any coalition missing one compute party
    learns only the sum.
  * ``engine="rss3"``: replicated shares among exactly three compute parties (three holders, or
    three servers); one more round (the rss3 key exchange; servers also re-share the inputs).
    Honest majority: a single compute party (with or without the consumer) learns only the sum;
    **two** compute parties together learn every holder's statistics. For a sum this is a weaker
    collusion threshold than ``beaver``'s; it is offered so a federation whose three rss3 servers
    already compute its regression or SS-XGB can run PCA on the same servers and trust model.

Threat model: semi-honest; the consumer does not collude with the compute parties (a consumer
together with all compute parties but one, or with two of the three rss3 compute parties, learns
a holder's statistics). What each role learns:

- the consumer: each holder's ``ceil(log2 max|statistic|)``; ``n``, ``s`` and ``G`` (so the mean
  and covariance) and everything derived from them;
- a compute party that holds no data (``compute_parties``): the statistics' length (so the
  feature count), nothing else (every array it receives is uniformly distributed);
- every holder: its own data, ``f`` (so, coarsely, the largest statistic over all holders), the
  pooled mean and scale (needed to project), and the selected components; with
  ``holder_output="full"`` also their explained variances. Eigenvectors without eigenvalues do not
  determine the covariance; but with ``holder_output="full"`` and every component
  (``n_components=None``) a holder learns the covariance ``C``, and with two holders it then
  recovers the other's Gram matrix and column sums given the other's row count (which the mean
  and its own statistics narrow to one unknown integer). Ask for no more than you need.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from mpcml import ckks, fixedpoint
from mpcml.engine import ENGINES
from mpcml.he import PackedEncryptedArray, decrypt_packed, encrypt_packed, generate_keypair, public_key_from_wire
from mpcml.party import Party
from mpcml.schema import Anything, Array, Int, Record
from mpcml.tensor import SharedTensor
from mpcml.session import Session, receive_revealed, send_input
from mpcml.triples import NoTriples
from protocols.common import check_matrix, check_party_ids, magnitude_bits
from protocols.config import ProtocolConfig, boolean, he_option, integer, one_of, option
from protocols.estimator import SecureEstimator

logger = logging.getLogger(__name__)

VARIANTS = ("he", "ckks", "ss")
HOLDER_OUTPUTS = ("components", "full")
CKKS_PRESET = "default"
MIN_FRAC_BITS = 8
_SLOT_BITS = 100  # packing slot width of the he variant
MODEL_KEYS = ("mean", "scale", "components", "explained_variance", "explained_variance_ratio")
FACTS = Record(features=Int(low=1), stat_bits=Int(-64, 4096))
SETUP = Record(frac_bits=Int(MIN_FRAC_BITS, 62), key=Anything())


def check_n_components(name: str, value: Any) -> int | float | None:
    """``None`` (all), a positive int or a fraction in (0, 1) of explained variance."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{name} must be a positive int, a float in (0, 1) or None, got {value}")
        return int(value)
    if isinstance(value, (float, np.floating)) and 0.0 < value < 1.0:
        return float(value)
    raise ValueError(f"{name} must be None, a positive int or a float in (0, 1), got {value!r}")


@dataclass(frozen=True)
class PCAConfig(ProtocolConfig):
    """The public parameters of one PPPCA run, then the parties."""

    n_components: int | float | None = option(
        None, "components to keep: an int, a fraction in (0, 1) of explained variance, or none (all)", check_n_components)
    variant: str = option("he", "secure sum: `he` (packed additively homomorphic encryption, scheme `he`), `ckks` or `ss` (additive shares)", one_of(*VARIANTS))
    standardize: bool = option(False, "PCA of the correlation matrix (features scaled to unit variance)", boolean)
    holder_output: str = option("components", "what holders receive: `components` (mean, scale and the selected "
                                "components: what projecting needs) or `full` (also their explained variances)",
                                one_of(*HOLDER_OUTPUTS))
    frac_bits: int = option(32, "fractional bits of the secure sums (lowered automatically for large statistics, "
                            f"down to {MIN_FRAC_BITS})", integer(MIN_FRAC_BITS, 40))
    he: str = he_option("`variant=he` (the consumer's key pair)")
    key_bits: int = option(2048, "modulus size of the consumer's `he` key for `variant=he`", integer(1024, 8192))
    engine: str = option("beaver", "`variant=ss` only: the compute parties' sharing: `beaver` (additive shares among "
                         "two or more compute parties; no dealer for a sum) or `rss3` (replicated shares among exactly "
                         "three compute parties, honest majority)", one_of(*ENGINES))
    holders: tuple[str, ...] = ()
    consumer: str = "consumer"
    compute_parties: tuple[str, ...] | None = None

    def validate(self) -> None:
        holders = check_party_ids(self.holders, "holders")
        if len(holders) < 2:
            raise ValueError(f"holders must name at least two data holders, got {list(holders)}")
        if self.consumer in holders:
            raise ValueError(f"the consumer {self.consumer!r} cannot also be a holder")
        if self.variant != "ss":
            if self.engine != "beaver":
                raise ValueError(f"engine={self.engine!r} applies to variant='ss' only (variant={self.variant!r} "
                                 "sums under the consumer's key)")
            if self.compute_parties is not None:
                raise ValueError(f"compute_parties apply to variant='ss' only, not variant={self.variant!r}")
            return
        if self.compute_parties is not None:
            servers = check_party_ids(self.compute_parties, "compute_parties")
            if len(servers) < 2:
                raise ValueError(f"compute_parties must name at least two parties, got {list(servers)}")
            if set(servers) & {*holders, self.consumer}:
                raise ValueError(f"compute_parties {list(servers)} must be neither holders nor the consumer")
        if self.engine == "rss3" and len(self.players) != 3:
            raise ValueError(f"engine='rss3' needs exactly three compute parties (three holders, or three "
                             f"compute_parties such as n_servers=3), got {list(self.players)}")

    @property
    def players(self) -> tuple[str, ...]:
        """The compute parties of ``variant="ss"``: ``compute_parties`` if given, else the holders."""
        return tuple(self.compute_parties) if self.compute_parties is not None else tuple(self.holders)


# --- statistics, their range, and the model --------------------------------------------------------


def local_statistics(X: np.ndarray) -> np.ndarray:
    """``[n_i, X^T 1, upper triangle of X^T X]`` as one float vector."""
    gram = X.T @ X
    return np.concatenate([[float(X.shape[0])], X.sum(axis=0), gram[np.triu_indices(X.shape[1])]])


def unpack_statistics(vector: np.ndarray, d: int) -> tuple[float, np.ndarray, np.ndarray]:
    n, s = float(vector[0]), vector[1 : d + 1]
    gram = np.zeros((d, d))
    gram[np.triu_indices(d)] = vector[d + 1 :]
    return n, s, gram + np.triu(gram, 1).T


def sum_frac_bits(config: PCAConfig, stat_bits: Mapping[str, int]) -> int:
    """Step 2: the fractional bits of the sums; a ``ValueError`` naming the holder if even 8 do not fit."""
    top = max(stat_bits.values())
    headroom = int(np.ceil(np.log2(len(config.holders)))) + 1
    if config.variant == "ckks":
        limit = ckks.PRESETS[CKKS_PRESET].max_abs / len(config.holders)
        if 2.0**top >= limit:
            worst = max(stat_bits, key=stat_bits.get)
            raise ValueError(f"holder {worst!r} has statistics up to 2^{top}, beyond the CKKS limit {limit:.4g} for "
                             f"{len(config.holders)} holders; scale X down or use variant='he'")
        return config.frac_bits
    capacity = (_SLOT_BITS - headroom - 2) if config.variant == "he" else (fixedpoint.RING_BITS - fixedpoint.HEADROOM_BITS - headroom)
    frac_bits = min(config.frac_bits, capacity - top - 1)
    if frac_bits < MIN_FRAC_BITS:
        worst = max(stat_bits, key=stat_bits.get)
        raise ValueError(f"holder {worst!r} has statistics (X^T X, column sums) up to 2^{top}: the {config.variant!r} sums "
                         f"keep only {frac_bits} fractional bits (need >= {MIN_FRAC_BITS}); scale X down by 2^"
                         f"{(MIN_FRAC_BITS - frac_bits + 1) // 2} or more" + (", or use variant='he'" if config.variant == "ss" else ""))
    if frac_bits < config.frac_bits:
        logger.info("PCA sums use %d fractional bits (statistics up to 2^%d)", frac_bits, top)
    return frac_bits


def components_from_statistics(n: float, s: np.ndarray, gram: np.ndarray, n_components: int | float | None,
                               standardize: bool) -> dict[str, np.ndarray]:
    """The consumer's eigendecomposition (step 4); mirrors :class:`sklearn.decomposition.PCA` (full SVD)."""
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
    if n_components is None:
        k = len(mean)
    elif isinstance(n_components, float):
        k = int(np.searchsorted(np.cumsum(ratio), n_components, side="right")) + 1
    else:
        if n_components > len(mean):
            raise ValueError(f"n_components={n_components} exceeds the {len(mean)} features")
        k = n_components
    k = min(k, len(mean))
    signs = np.sign(eigvec[np.arange(len(eigvec)), np.argmax(np.abs(eigvec), axis=1)])
    return {"mean": mean, "scale": scale, "components": eigvec[:k] * signs[:k, None],
            "explained_variance": eigval[:k], "explained_variance_ratio": ratio[:k]}


def reference_model(blocks: list[np.ndarray], config: PCAConfig) -> dict[str, np.ndarray]:
    """The plaintext replay: the same rounded statistics, summed in float64, the same eigendecomposition."""
    stats = [local_statistics(b) for b in blocks]
    frac_bits = sum_frac_bits(config, {h: magnitude_bits(s) for h, s in zip(config.holders, stats)})
    total = sum(np.rint(s * 2.0**frac_bits) / 2.0**frac_bits for s in stats)
    return components_from_statistics(*unpack_statistics(total, blocks[0].shape[1]), config.n_components,
                                      config.standardize)


def model_tolerance(blocks: list[np.ndarray], config: PCAConfig, *, exact: bool = False) -> float:
    """A bound on ``|secure - reference|`` for every model entry and projection.

    Against :func:`reference_model` (``exact=False``) the ``he``/``ss`` sums are exact and only
    float64 summation differs (``m 2^-52`` relative per entry); ``ckks`` adds its stated error
    ``2^-19 max(1, |statistic|)`` per summand. Against PCA of the unrounded data (``exact=True``) the
    rounding to ``2^-f`` adds ``m 2^-(f+1)`` per entry. From the error ``e`` of the sums: ``C``'s
    entries move by at most ``e (1 + |mean|)^2 / (n - 1)`` (``/ sigma_min^2`` when standardising),
    its spectral norm by ``d`` times that; eigenvalues by that norm and eigenvectors by twice it over
    the smallest gap between a kept eigenvalue and any other (Davis-Kahan); projections by the
    largest centred row norm times the eigenvector error.
    """
    stats = [local_statistics(b) for b in blocks]
    top = float(max(np.max(np.abs(st)) for st in stats))
    m, X = len(blocks), np.vstack(blocks)
    n, d = X.shape
    frac_bits = sum_frac_bits(config, {h: magnitude_bits(st) for h, st in zip(config.holders, stats)})
    error = m * top * 2.0**-52 * 4
    if config.variant == "ckks":
        error += m * 2.0**-19 * max(1.0, top)
    if exact:
        error += m * 2.0 ** -(frac_bits + 1)
    mean = np.abs(X.mean(axis=0)).max()
    spread = X.std(axis=0, ddof=1)
    entry = error * (1 + mean) ** 2 / (n - 1) / (spread.min() ** 2 if config.standardize else 1.0)
    norm = d * entry
    full = components_from_statistics(*unpack_statistics(sum(stats), d), None, config.standardize)
    k = reference_model(blocks, config)["components"].shape[0]
    eigenvalues = np.concatenate([full["explained_variance"], [0.0]])
    gap = min(np.min(np.abs(np.delete(eigenvalues, i) - eigenvalues[i])) for i in range(k))
    vector = 2 * norm / max(gap, norm)
    scale = spread if config.standardize else np.ones(d)
    rows = float(np.max(np.linalg.norm((X - X.mean(axis=0)) / scale, axis=1)))
    return float(max(norm, vector * (1 + rows), error * (1 + mean) / n))


# --- step 3: the secure sum, per variant ----------------------------------------------------------


def _chain(config: PCAConfig, me: str) -> tuple[str | None, str]:
    """In the HE/CKKS chain: who sends to ``me`` (``None`` for the first holder) and whom ``me`` sends to."""
    position = config.holders.index(me)
    previous = config.holders[position - 1] if position > 0 else None
    return previous, config.holders[position + 1] if position + 1 < len(config.holders) else config.consumer


def _ss_sum(party: Party, config: PCAConfig, encoded: np.ndarray | None = None) -> None:
    """A compute party's part of the ``ss`` sum: every holder's statistics in (``encoded``: this
    party's own, when the holders compute), summed locally, its term of the sum out to the consumer."""
    triples = NoTriples(config.players) if config.engine == "beaver" else None
    session = Session(party, config.players, triples, engine=config.engine)
    if config.compute_parties is None:
        parts = [SharedTensor(session, session.input_ring(encoded if h == party.id else None, h)) for h in config.holders]
    else:
        parts = [session.input_external(h, name=f"statistics of {h}") for h in config.holders]
    sum(parts[1:], parts[0]).reveal_outside(config.consumer)
    session.close()


def _ss_contribute(party: Party, config: PCAConfig, stats: np.ndarray, frac_bits: int, key: Any) -> None:
    encoded = fixedpoint.encode(stats, frac_bits, name="local statistics")
    if config.compute_parties is None:
        _ss_sum(party, config, encoded)
    else:
        send_input(party, config.players, encoded)


def _he_contribute(party: Party, config: PCAConfig, stats: np.ndarray, frac_bits: int, key: Any) -> None:
    public_key = public_key_from_wire(key, config.he)
    mine = encrypt_packed(public_key, stats, frac_bits=frac_bits, slot_bits=_SLOT_BITS, max_summands=len(config.holders))
    previous, nxt = _chain(config, party.id)
    if previous is not None:
        received = PackedEncryptedArray.from_wire(public_key, party.recv(previous, what="running sum"))
        if received.length != mine.length:
            raise ValueError(f"holder {previous!r} sent statistics of length {received.length}, expected {mine.length}")
        mine = received + mine  # includes this holder's fresh encryption: the randomness is fresh
    party.send(nxt, mine.to_wire())


def _ckks_contribute(party: Party, config: PCAConfig, stats: np.ndarray, frac_bits: int, key: Any) -> None:
    params = ckks.PRESETS[CKKS_PRESET]
    context = ckks.load_context(key)
    mine = ckks.CKKSArray.encrypt(context, params, stats)
    previous, nxt = _chain(config, party.id)
    if previous is not None:
        received = ckks.CKKSArray.from_wire(party.recv(previous, what="running sum"), context, params)
        if received.shape != mine.shape:
            raise ValueError(f"holder {previous!r} sent statistics of shape {received.shape}, expected {mine.shape}")
        mine = received + mine
    party.send(nxt, mine.to_wire())


_CONTRIBUTE = {"ss": _ss_contribute, "he": _he_contribute, "ckks": _ckks_contribute}


def _consumer_keys(config: PCAConfig) -> tuple[Any, Callable[[Party], np.ndarray]]:
    """The consumer's key material to broadcast (step 2) and how it obtains the summed vector (step 3)."""
    if config.variant == "ss":
        return None, lambda party: receive_revealed(party, config.players)
    if config.variant == "ckks":
        context, params = ckks.make_context(CKKS_PRESET)
        return ckks.public_context_bytes(context), lambda party: ckks.CKKSArray.from_wire(
            party.recv(config.holders[-1], what="encrypted sum"), context, params).decrypt()
    public_key, private_key = generate_keypair(config.he, config.key_bits)
    return public_key.to_wire(), lambda party: decrypt_packed(private_key, PackedEncryptedArray.from_wire(
        public_key, party.recv(config.holders[-1], what="encrypted sum")))[0]


# --- the roles -----------------------------------------------------------------------------------


def pca_holder(party: Party, X: Any, *, config: PCAConfig) -> dict[str, np.ndarray]:
    """Role of a data holder (steps 1, 3, 5): returns the model it receives and ``projection``, its rows projected."""
    X = check_matrix(X, f"X of holder {party.id!r}")
    stats = local_statistics(X)
    # 1. public facts to the consumer
    party.send(config.consumer, {"features": int(X.shape[1]), "stat_bits": magnitude_bits(stats)})
    setup = party.recv(config.consumer, expect=SETUP, what="set-up")
    # 3. the secure sum
    _CONTRIBUTE[config.variant](party, config, stats, setup["frac_bits"], setup["key"])
    keys = MODEL_KEYS if config.holder_output == "full" else MODEL_KEYS[:3]
    model = party.recv(config.consumer, expect=Record(**{k: Array(np.float64) for k in keys}), what="model")
    if model["components"].ndim != 2 or model["components"].shape[1] != X.shape[1]:
        raise ValueError(f"consumer {config.consumer!r} sent components of shape {model['components'].shape}")
    # 5. the local projection
    return {**model, "projection": ((X - model["mean"]) / model["scale"]) @ model["components"].T}


def pca_server(party: Party, *, config: PCAConfig) -> None:
    """Role of a compute party that holds no data (``compute_parties``; step 3 only)."""
    # 3. the secure sum of the holders' inputs, its term to the consumer
    _ss_sum(party, config)


def pca_consumer(party: Party, *, config: PCAConfig) -> dict[str, np.ndarray]:
    """Role of the data consumer (steps 2 and 4): returns the whole model plus ``n_samples``."""
    # 1.-2. the facts, the fractional bits, the key
    facts = party.gather(config.holders, expect=FACTS, what="set-up facts")
    features = {h: f["features"] for h, f in facts.items()}
    if len(set(features.values())) != 1:
        raise ValueError(f"the holders' blocks must have the same number of columns, got {features}")
    frac_bits = sum_frac_bits(config, {h: f["stat_bits"] for h, f in facts.items()})
    key, receive = _consumer_keys(config)
    party.send_all(config.holders, {"frac_bits": frac_bits, "key": key})
    # 3. the summed statistics
    vector = receive(party)
    if config.variant == "ss":
        vector = fixedpoint.decode(vector, frac_bits)
    d = next(iter(features.values()))
    if len(vector) != 1 + d + d * (d + 1) // 2:
        raise ValueError(f"the summed statistics have length {len(vector)}, not that of {d} features")
    # 4. the eigendecomposition, and what the holders may see
    model = components_from_statistics(*unpack_statistics(vector, d), config.n_components, config.standardize)
    shared = model if config.holder_output == "full" else {k: model[k] for k in MODEL_KEYS[:3]}
    party.send_all(config.holders, shared)
    return {**model, "n_samples": np.array(vector[0]), "frac_bits": np.array(frac_bits)}


def roles(config: PCAConfig, data: Mapping[str, Any]) -> tuple[dict[str, Callable[..., Any]], dict[str, dict]]:
    """Every party's role and inputs (``data``: holder -> its rows; absent holders get no inputs here)."""
    party_roles: dict[str, Callable[..., Any]] = {h: partial(pca_holder, config=config) for h in config.holders}
    party_roles[config.consumer] = partial(pca_consumer, config=config)
    if config.variant == "ss" and config.compute_parties is not None:
        party_roles.update({s: partial(pca_server, config=config) for s in config.compute_parties})
    inputs = {pid: ({"X": data[pid]} if pid in data else {}) for pid in party_roles}
    return party_roles, inputs


# --- the estimator ---------------------------------------------------------------------------------


class SecurePCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, SecureEstimator):
    """PPPCA as a scikit-learn transformer; every party runs in this process.

    ``fit(X)`` takes a list of per-holder row blocks ``[X_1, ..., X_m]`` (``m >= 2``, same
    columns), or a full ``X`` with ``partition=Horizontal(m)`` (a simulation, e.g. in a
    ``Pipeline``); the consumer is a separate party. ``n_servers`` (``variant="ss"``): 0 (the
    holders compute the sum) or ``k >= 2`` compute servers ``server-0, ...`` the holders input to
    (``engine="rss3"`` needs exactly three compute parties: three holders or ``n_servers=3``). After ``fit``: ``components_``, ``mean_``,
    ``explained_variance_``, ``explained_variance_ratio_``, ``n_components_``, ``scale_`` (ones
    unless ``standardize``), ``n_samples_``, ``communication_`` and ``projections_`` (each holder's
    rows, projected locally by that holder). ``transform``/``inverse_transform`` use the public
    model on a full matrix or a list of blocks; ``set_output`` and ``get_feature_names_out`` work.
    """

    config_class = PCAConfig
    partitions = ("horizontal",)
    extra_params = {"n_servers": 0}
    saved_attributes = ("mean_", "scale_", "components_", "explained_variance_", "explained_variance_ratio_",
                        "n_components_", "n_samples_")

    def fit(self, X: Any, y: Any = None) -> "SecurePCA":
        blocks = self.fit_data(X, None, labels=False).blocks
        if isinstance(self.n_components, int) and self.n_components > blocks[0].shape[1]:
            raise ValueError(f"n_components={self.n_components} exceeds the {blocks[0].shape[1]} features")
        servers = self.n_servers
        if isinstance(servers, bool) or not isinstance(servers, (int, np.integer)) or servers == 1 or servers < 0:
            raise ValueError(f"n_servers must be 0 (the holders compute) or at least 2, got {servers!r}")
        config = self.make_config(holders=tuple(f"holder-{i}" for i in range(len(blocks))), consumer="consumer",
                                  compute_parties=tuple(f"server-{i}" for i in range(servers)) or None)
        sum_frac_bits(config, {h: magnitude_bits(local_statistics(b)) for h, b in zip(config.holders, blocks)})
        party_roles, inputs = roles(config, dict(zip(config.holders, blocks)))
        out = self.run(party_roles, inputs)
        model = out["consumer"]
        self.mean_, self.scale_, self.components_ = model["mean"], model["scale"], model["components"]
        self.explained_variance_ = model["explained_variance"]
        self.explained_variance_ratio_ = model["explained_variance_ratio"]
        self.n_components_ = int(self.components_.shape[0])
        self.n_samples_ = int(model["n_samples"])
        self.projections_ = [out[h]["projection"] for h in config.holders]
        return self

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "components_")
        return ((self.features(X) - self.mean_) / self.scale_) @ self.components_.T

    def inverse_transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "components_")
        X = check_matrix(X, "X")
        if X.shape[1] != self.n_components_:
            raise ValueError(f"X has {X.shape[1]} columns, the model has {self.n_components_} components")
        return (X @ self.components_) * self.scale_ + self.mean_
