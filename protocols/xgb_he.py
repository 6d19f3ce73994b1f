"""SecureBoost-style vertical XGBoost with Paillier-encrypted gradients (the fast, leakier variant).

Cheng et al., "SecureBoost: A Lossless Federated Learning Framework", IEEE Intelligent Systems 2021
(as offered by FATE and SecretFlow). Parties hold different feature columns of the same rows; the
*label holder* (active party) also holds the labels. Per tree the label holder computes the
gradients ``g`` and hessians ``h`` of every sampled row in plaintext, packs them into one Paillier
plaintext per row, ``v = g·2^W + h`` (``h >= 0``; ``g`` and ``h`` fixed point with ``frac_bits``
bits, ``W`` bits hold any sum of ``h``), encrypts them once and sends them to the *passive*
parties. Per tree level every passive party

1. sums the ciphertexts of each node's rows per quantile bucket (``Enc(Σ v)`` = product of
   ciphertexts; :meth:`mpcml.paillier.EncryptedArray.rmatmul` with the sparse one-hot bucket
   matrix), for the smaller of two siblings only (the other is parent − sibling);
2. turns bucket sums into left sums (prefix products), orders them by a CSPRNG permutation within
   each feature (one permutation per tree), packs ``⌊(|n|-3)/S⌋`` of them per ciphertext (Horner:
   ``c ← c^(2^S) · c_j``), re-randomises them (``r^n`` uniform on the subgroup of the label
   holder's DJN base, which holds the randomness of all its encryptions: ``"subgroup"`` in
   :meth:`mpcml.paillier.PublicKey.obfuscators`) and returns them — for the smaller sibling only:
   the label holder subtracts it from the parent's decrypted sums, which are in the same order.

The label holder decrypts, finds the best split of each node among its own candidates and the
returned ones with xgboost's gain ``½[G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)]`` (plaintext,
exact up to the fixed-point rounding of ``g`` and ``h``), and tells the winning passive party the
(shuffled) index of the winner; that party maps it to its feature and threshold, keeps them, and
returns which of the node's rows go left.

Threat model: semi-honest, no collusion. What each party learns:

- label holder: for every node and every passive party's candidate split, the left sums
  ``(G_L, H_L)`` (in an order shuffled within each feature, the same for all nodes of a tree;
  ``H_L`` grows with the threshold, so the order can be recovered), which rows go left at every split (hence every node's rows), and the number of
  candidate thresholds of each passive feature. It never sees a passive party's feature values
  or thresholds. At prediction it learns, for every row, which leaves each passive party's
  splits allow (hence the row's path).
- passive party: the number of rows, which rows each tree samples and every node's rows (the
  node assignment is sent to it at each level), which nodes it owns; nothing about ``g``, ``h``
  or the labels beyond that (Paillier, IND-CPA). Its saved model holds only its own splits.
- The leaf weights stay with the label holder in plaintext (as in SecureBoost).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import gmpy2
import numpy as np
import scipy.sparse as sp

from mpcml.csprng import Csprng
from mpcml.paillier import EncryptedArray, PrivateKey, PublicKey, generate_keypair, pack_ciphertexts, slots_per_ciphertext
from mpcml.party import Party

from .xgb_trees import (
    PartyTrees,
    QuantileBinner,
    XGBParams,
    base_margin,
    cumulative_histogram,
    feature_values,
    gradients,
    leaf_reachability,
    leaf_weight,
    split_gains,
)

Progress = Callable[[str], None] | None
DEFAULT_KEY_BITS = 2048
GH_FRAC_BITS = 24


@dataclass
class HEModel:
    """One party's part of an HE SecureBoost model (``leaves``/``base`` only at the label holder)."""

    trees: PartyTrees
    leaves: np.ndarray | None = None
    base: float | None = None


# --- packing (g, h) -----------------------------------------------------------------------------


def _layout(g_int: np.ndarray, h_int: np.ndarray) -> tuple[int, int]:
    """``(W, S)``: bits of the ``h`` part and of a whole slot, for sums over any subset of rows."""
    w = int(np.sum(h_int, dtype=object)).bit_length() + 1
    g_bound = int(np.sum(np.abs(g_int), dtype=object))
    return w, w + g_bound.bit_length() + 2


def _unpack(word: int, count: int, w: int, s: int) -> list[tuple[int, int]]:
    """Split a signed Horner-packed word into ``count`` ``(G, H)`` integer pairs (lowest slot first)."""
    out = []
    for _ in range(count):
        low = word & ((1 << s) - 1)
        if low >= 1 << (s - 1):
            low -= 1 << s
        word = (word - low) >> s
        h = low & ((1 << w) - 1)
        out.append(((low - h) >> w, h))
    return out


def derived_nodes(counts: dict[int, int]) -> set[int]:
    """Nodes of a level whose sums are parent − sibling rather than computed: the larger non-empty
    sibling of each pair with both children non-empty (ties: the right one). Both sides apply it."""
    derived = set()
    for left in range(min(counts), max(counts) + 1, 2):
        right = left + 1
        if left and counts.get(left, 0) and counts.get(right, 0):
            derived.add(right if counts[left] <= counts[right] else left)
    return derived


# --- the label holder -----------------------------------------------------------------------------


def _recv_checked(party: Party, frm: str, kind: type, what: str):
    obj = party.recv(frm)
    if not isinstance(obj, kind):
        raise ValueError(f"party {frm!r} sent a malformed {what}")
    return obj


def train_label_holder(
    party: Party,
    passive: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    params: XGBParams,
    *,
    key_bits: int = DEFAULT_KEY_BITS,
    progress: Progress = None,
) -> HEModel:
    """Label holder's role: returns its model (its own splits, all leaf weights in plaintext)."""
    passive = tuple(passive)
    for pid in passive:
        party.check_peer(pid, "passive party")
    x = feature_values(x)
    n = x.shape[0]
    party.send_all(passive, params.to_wire())
    counts = {}
    for pid in passive:
        info = _recv_checked(party, pid, dict, "setup message")
        if set(info) != {"rows", "candidates"} or not all(isinstance(v, int) for v in info.values()):
            raise ValueError(f"party {pid!r} sent a malformed setup message")
        if info["rows"] != n:
            raise ValueError(f"party {pid!r} holds {info['rows']} rows but the label holder holds {n}")
        counts[pid] = info["candidates"]
    public_key, private_key = generate_keypair(key_bits)
    party.send_all(passive, public_key.to_wire())
    private_key.prepare()

    binner = QuantileBinner(params.max_bin, params.binning).fit(x)
    bins = binner.transform(x)
    depth, n_leaves = params.max_depth, params.n_leaves
    model = HEModel(PartyTrees.empty(params.n_estimators, depth), np.zeros((params.n_estimators, n_leaves)))
    model.base = base_margin(y, params.loss)
    margin = np.full(n, model.base)
    start = time.perf_counter()
    for t in range(params.n_estimators):
        g, h = gradients(margin, y, params.loss)
        sampled = _sample_rows(party.rng, n, params.subsample)
        own = _feature_mask(party.rng, binner, params.colsample_bytree)
        g_int = np.rint(g[sampled] * 2.0**GH_FRAC_BITS).astype(np.int64)
        h_int = np.rint(h[sampled] * 2.0**GH_FRAC_BITS).astype(np.int64)
        w, s = _layout(g_int, h_int)
        plain = np.array([int(a) * (1 << w) + int(b) for a, b in zip(g_int, h_int)], dtype=object)
        enc = private_key.encrypt_int(plain)
        party.send_all(passive, {"rows": sampled, "enc": enc.to_wire(), "slot_bits": s})
        gh = np.stack([g_int, h_int], axis=1).astype(np.float64) / 2.0**GH_FRAC_BITS
        in_sample = np.zeros(n, dtype=bool)
        in_sample[sampled] = True
        pos = np.zeros(n, dtype=np.int64)  # node of every row (heap index)
        parent_sums: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        for d in range(depth):
            nodes = np.arange(2**d - 1, 2 ** (d + 1) - 1)
            party.send_all(passive, pos)
            node_g = np.array([gh[pos[sampled] == v, 0].sum() for v in nodes])
            node_h = np.array([gh[pos[sampled] == v, 1].sum() for v in nodes])
            best = _own_best(gh, bins[sampled], pos[sampled], nodes, binner, own, node_g, node_h, params)
            derived = derived_nodes({int(v): int(np.sum(pos[sampled] == v)) for v in nodes})
            for pid in passive:
                words = _recv_checked(party, pid, list, "histogram")
                gl, hl = _decode_histograms(private_key, words, nodes, derived, counts[pid], w, s)
                _derive_siblings(gl, hl, nodes, derived, parent_sums.get(pid, {}))
                parent_sums[pid] = {int(v): (gl[j], hl[j]) for j, v in enumerate(nodes)}
                gains = split_gains(gl, hl, node_g, node_h, params)
                for j in range(len(nodes)):
                    k = int(np.argmax(gains[j])) if gains.shape[1] else -1
                    if k >= 0 and gains[j, k] > best[j][0]:
                        best[j] = (float(gains[j, k]), pid, k)
            go_left = _apply_splits(party, passive, x, t, nodes, best, binner, model.trees, pos)
            pos = np.where(go_left, 2 * pos + 1, 2 * pos + 2)
            if progress is not None:
                progress(f"tree {t + 1}/{params.n_estimators} depth {d + 1}/{depth} {time.perf_counter() - start:.1f}s")
        leaf = pos - (n_leaves - 1)
        lg = np.bincount(leaf[in_sample], weights=g[in_sample], minlength=n_leaves)
        lh = np.bincount(leaf[in_sample], weights=h[in_sample], minlength=n_leaves)
        model.leaves[t] = leaf_weight(lg, lh, params)
        margin = margin + model.leaves[t][leaf]
    party.send_all(passive, "done")
    return model


def _sample_rows(rng: Csprng, n: int, rate: float) -> np.ndarray:
    if rate >= 1.0:
        return np.arange(n)
    keep = rng.random_uint64(n) < np.uint64(min(int(rate * 2.0**64), 2**64 - 1))
    if not keep.any():
        keep[rng.randbelow(n)] = True
    return np.flatnonzero(keep)


def _feature_mask(rng: Csprng, binner: QuantileBinner, rate: float) -> np.ndarray:
    """Per-candidate 0/1 mask of the features kept for this tree (``colsample_bytree``)."""
    n_feat = len(binner.cuts_)
    keep = np.zeros(n_feat, dtype=bool)
    keep[rng.permutation(n_feat)[: max(1, int(round(rate * n_feat)))]] = True
    feats, _ = binner.candidates()
    return keep[feats]


def _own_best(gh, bins, pos, nodes, binner, own_mask, node_g, node_h, params) -> list[tuple[float, str | None, int]]:
    """Best own split per node as ``(gain, None, candidate)``; ``(0, None, -1)`` means no split yet."""
    best = []
    for j, v in enumerate(nodes):
        rows = pos == v
        left = cumulative_histogram(gh[rows], bins[rows], binner.cuts_)
        gains = split_gains(left[None, :, 0], left[None, :, 1], node_g[j : j + 1], node_h[j : j + 1], params)[0]
        gains = np.where(own_mask, gains, -np.inf)
        k = int(np.argmax(gains)) if gains.size else -1
        best.append((float(gains[k]), None, k) if k >= 0 and gains[k] > 0 else (0.0, None, -1))
    return best


def _derive_siblings(gl: np.ndarray, hl: np.ndarray, nodes: np.ndarray, derived: set[int],
                     parents: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """Fill the ``derived`` nodes' rows in place: parent − sibling (same candidate order within a tree)."""
    row = {int(v): j for j, v in enumerate(nodes)}
    for v in derived:
        sibling = row[v + 1 if v % 2 else v - 1]
        parent_g, parent_h = parents[(v - 1) // 2]
        gl[row[v]], hl[row[v]] = parent_g - gl[sibling], parent_h - hl[sibling]


def _decode_histograms(
    private_key: PrivateKey, words: list, nodes: np.ndarray, derived: set[int], count: int, w: int, s: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(G_L, H_L)`` arrays ``(nodes, candidates)`` from a passive party's packed answers.

    Empty nodes and ``derived`` nodes (filled in by the caller) come back as NaN.
    """
    if len(words) != len(nodes):
        raise ValueError(f"expected histograms for {len(nodes)} nodes, got {len(words)}")
    per_word = slots_per_ciphertext(private_key.public_key, s)
    gl = np.full((len(nodes), count), np.nan)
    hl = np.full((len(nodes), count), np.nan)
    for j, node_words in enumerate(words):
        if not node_words or int(nodes[j]) in derived:
            continue
        nsquare = private_key.public_key.nsquare
        if (not isinstance(node_words, list) or len(node_words) != -(-count // per_word)
                or not all(isinstance(c, int) and 0 < c < nsquare for c in node_words)):
            raise ValueError("malformed packed histogram")
        plain = private_key.decrypt_int(EncryptedArray(private_key.public_key, np.array(node_words, dtype=object), 0))
        pairs = []
        for word in plain:
            pairs.extend(_unpack(int(word), per_word, w, s))
        pairs = np.array(pairs[:count], dtype=np.float64) / 2.0**GH_FRAC_BITS
        gl[j], hl[j] = pairs[:, 0], pairs[:, 1]
    return gl, hl


def _apply_splits(party, passive, x, t, nodes, best, binner, trees, pos) -> np.ndarray:
    """Record or dispatch each node's winner; returns the go-left flag of every row."""
    go_left = np.ones(len(pos), dtype=bool)  # unsplit nodes send every row left
    orders = {pid: {} for pid in passive}
    for j, (_, owner, k) in enumerate(best):
        v = int(nodes[j])
        if owner is None and k >= 0:
            f, thr = binner.threshold(k)
            trees.set_split(t, v, f, thr)
            rows = pos == v
            go_left[rows] = x[rows, f] < thr
        elif owner is not None:
            orders[owner][str(v)] = k
    for pid in passive:
        party.send(pid, orders[pid])
    for pid in passive:
        answer = _recv_checked(party, pid, dict, "split answer")
        if set(answer) != set(orders[pid]):
            raise ValueError(f"party {pid!r} answered for nodes {sorted(answer)}, expected {sorted(orders[pid])}")
        for key, left in answer.items():
            rows = pos == int(key)
            if not isinstance(left, np.ndarray) or left.shape != (int(rows.sum()),):
                raise ValueError(f"party {pid!r} sent a malformed split for node {key}")
            go_left[rows] = left.astype(bool)
    return go_left


# --- a passive party ------------------------------------------------------------------------------


class _PassiveHistograms:
    """A passive party's encrypted left sums per node (unshuffled, kept for the subtraction trick)."""

    def __init__(self, public_key: PublicKey, binner: QuantileBinner, bins: np.ndarray, rng: Csprng) -> None:
        self.public_key = public_key
        self.binner = binner
        self.rng = rng
        widths = [len(c) + 1 for c in binner.cuts_]
        self.offsets = np.concatenate([[0], np.cumsum(widths)])
        self.bucket_rows = bins + self.offsets[:-1]  # row of the one-hot matrix per (row, feature)
        self.n_buckets = int(self.offsets[-1])

    def left_sums(self, enc: EncryptedArray, members: np.ndarray) -> EncryptedArray:
        """Encrypted left sums of every candidate over the sampled rows ``members`` (positions in ``enc``)."""
        rows = self.bucket_rows[members]  # (k, features)
        cols = np.repeat(np.arange(len(members)), rows.shape[1])
        onehot = sp.csr_matrix((np.ones(rows.size, dtype=np.int64), (rows.ravel(), cols)), shape=(self.n_buckets, len(members)))
        buckets = list(enc[members].rmatmul(onehot).ciphertexts)
        n2 = self.public_key.nsquare
        out = []
        for f, c in enumerate(self.binner.cuts_):
            acc = buckets[self.offsets[f]]
            for b in range(len(c)):
                if b:
                    acc = acc * buckets[self.offsets[f] + b] % n2
                out.append(acc)
        return EncryptedArray(self.public_key, np.array(out, dtype=object), 0)

    def shuffle(self) -> np.ndarray:
        """A fresh order of the candidates, shuffled within each feature: ``order[i]`` is sent at position ``i``."""
        feats, _ = self.binner.candidates()
        return np.concatenate([np.flatnonzero(feats == f)[self.rng.permutation(int(np.sum(feats == f)))]
                               for f in range(len(self.binner.cuts_))] or [np.zeros(0, np.int64)])

    def shuffled_packed(self, sums: EncryptedArray, slot_bits: int, keep: np.ndarray, order: np.ndarray) -> list[int]:
        """Candidates in ``order``, packed and re-randomised. Candidates of features dropped by
        column subsampling are sent as encryptions of zero (never a valid split)."""
        cts = sums.ciphertexts.copy()
        cts[~keep] = gmpy2.mpz(1)
        words = pack_ciphertexts(self.public_key, list(cts[order]), slot_bits)
        fresh = EncryptedArray(self.public_key, np.array(words, dtype=object), 0).rerandomize("subgroup")
        return [int(c) for c in fresh.ciphertexts]


def train_passive(party: Party, label_holder: str, x: np.ndarray, *, progress: Progress = None) -> HEModel:
    """Passive party's role: returns its model (its own splits only)."""
    party.check_peer(label_holder, "label holder")
    params = XGBParams.from_wire(party.recv(label_holder))
    x = feature_values(x)
    binner = QuantileBinner(params.max_bin, params.binning).fit(x)
    bins = binner.transform(x)
    n = x.shape[0]
    party.send(label_holder, {"rows": n, "candidates": binner.n_candidates})
    public_key = PublicKey.from_wire(party.recv(label_holder))
    public_key.prepare("subgroup")
    hist = _PassiveHistograms(public_key, binner, bins, party.rng)
    trees = PartyTrees.empty(params.n_estimators, params.max_depth)
    start = time.perf_counter()
    for t in range(params.n_estimators):
        msg = party.recv(label_holder)
        if not isinstance(msg, dict) or set(msg) != {"rows", "enc", "slot_bits"}:
            raise ValueError(f"party {label_holder!r} sent a malformed tree message")
        sampled = np.asarray(msg["rows"], dtype=np.int64)
        if sampled.ndim != 1 or sampled.size == 0 or sampled.min() < 0 or sampled.max() >= n:
            raise ValueError("sampled rows out of range")
        enc = EncryptedArray.from_wire(public_key, msg["enc"])
        slot_bits = int(msg["slot_bits"])
        if not 8 <= slot_bits <= public_key.bits - 3 or enc.shape != sampled.shape:
            raise ValueError("malformed encrypted gradients")
        keep = _feature_mask(party.rng, binner, params.colsample_bytree)
        order = hist.shuffle()  # one order per tree, so the label holder can subtract siblings
        parent_sums: dict[int, EncryptedArray] = {}
        for d in range(params.max_depth):
            pos = party.recv(label_holder)
            if not isinstance(pos, np.ndarray) or pos.shape != (n,):
                raise ValueError("malformed node assignment")
            nodes = range(2**d - 1, 2 ** (d + 1) - 1)
            sums, derived = _level_sums(hist, enc, pos[sampled], nodes, parent_sums)
            answers = [hist.shuffled_packed(sums[v], slot_bits, keep, order) if v in sums and v not in derived else []
                       for v in nodes]
            party.send(label_holder, answers)
            won = party.recv(label_holder)
            if not isinstance(won, dict):
                raise ValueError("malformed split order")
            reply = {}
            for key, k in won.items():
                v = int(key)
                if v not in sums or not 0 <= int(k) < len(order):
                    raise ValueError(f"invalid winning candidate for node {key}")
                f, thr = binner.threshold(_lowest_tied(binner, bins[sampled[pos[sampled] == v]], int(order[int(k)])))
                trees.set_split(t, v, f, thr)
                reply[key] = (x[pos == v, f] < thr).astype(np.uint8)
            party.send(label_holder, reply)
            parent_sums = sums
            if progress is not None:
                progress(f"tree {t + 1}/{params.n_estimators} depth {d + 1}/{params.max_depth} {time.perf_counter() - start:.1f}s")
    if party.recv(label_holder) != "done":
        raise ValueError(f"party {label_holder!r} did not end the training properly")
    return HEModel(trees)


def _lowest_tied(binner: QuantileBinner, node_bins: np.ndarray, candidate: int) -> int:
    """The lowest candidate of the same feature splitting the node's rows like ``candidate``.

    Candidates between two occupied buckets tie exactly; xgboost keeps the lowest, and the label
    holder cannot (it sees them shuffled), so the owner picks it: the largest occupied bucket
    on the left side.
    """
    feats, ks = binner.candidates()
    f, k = feats[candidate], ks[candidate]
    left = node_bins[:, f][node_bins[:, f] <= k]
    return int(candidate - k + left.max()) if left.size else candidate


def _level_sums(hist: _PassiveHistograms, enc: EncryptedArray, pos: np.ndarray, nodes: range,
                parent_sums: dict[int, EncryptedArray]) -> tuple[dict[int, EncryptedArray], set[int]]:
    """Encrypted left sums of each non-empty node (:func:`derived_nodes` as parent − sibling) and the derived set."""
    members = {v: np.flatnonzero(pos == v) for v in nodes}
    derived = derived_nodes({v: len(m) for v, m in members.items()})
    sums = {v: hist.left_sums(enc, m) for v, m in members.items() if len(m) and v not in derived}
    for v in derived:
        sums[v] = parent_sums[(v - 1) // 2] - sums[v + 1 if v % 2 else v - 1]
    return sums, derived


# --- prediction -----------------------------------------------------------------------------------


def predict_label_holder(party: Party, passive: Sequence[str], x: np.ndarray, model: HEModel) -> np.ndarray:
    """Label holder's prediction role: returns the margins of the rows of ``x``.

    Every passive party sends the 0/1 matrix of leaves its own splits allow per row; the
    product with the label holder's is the one-hot of each row's leaf.
    """
    if model.leaves is None or model.base is None:
        raise ValueError("this model is not a label holder's model (it has no leaf weights)")
    reach = leaf_reachability(feature_values(x), model.trees)
    for pid in passive:
        theirs = party.recv(pid)
        if not isinstance(theirs, np.ndarray) or theirs.shape != reach.shape:
            raise ValueError(f"party {pid!r} sent a malformed reachability matrix")
        reach = reach & theirs
    return model.base + reach.astype(np.float64) @ model.leaves.ravel()


def predict_passive(party: Party, label_holder: str, x: np.ndarray, model: HEModel) -> None:
    """Passive party's prediction role: sends its leaf-reachability matrix to the label holder."""
    party.send(label_holder, leaf_reachability(feature_values(x), model.trees))
