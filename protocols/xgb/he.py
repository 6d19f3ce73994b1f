"""SecureBoost: vertical XGBoost with homomorphically encrypted gradients (the fast, leakier method).

Cheng et al., "SecureBoost: A Lossless Federated Learning Framework", IEEE Intelligent Systems
2021 (as offered by FATE and SecretFlow). The data parties hold different feature columns of
the same rows; the *label holder* (active party) also holds the labels and computes the
gradients in plaintext; the *passive* parties only ever see them encrypted. The steps of
:func:`he_label_holder` and :func:`he_passive`, numbered as in the code:

Set-up (``_setup``):
  1. Every party bins its own columns; each passive party sends its facts (rows, candidate count,
     options digest) to the label holder and receives the label holder's; the range analysis.
  2. The label holder makes a key pair of the additively homomorphic scheme ``he`` (Okamoto–Uchiyama
     by default, or Paillier; :mod:`mpcml.he`) and sends the public key; each passive party checks it
     (:func:`mpcml.he.public_key_from_wire`, expecting ``he``).
Per tree (``_send_gradients``):
  3. The label holder computes ``g``, ``h`` (exact sigmoid) at the current margins, samples the
     rows (``subsample``), quantises ``g``, ``h`` to ``2^-24`` and packs one plaintext per sampled
     row, ``v = g 2^W + h`` (``h >= 0``; ``W`` bits hold any sum of ``h``), encrypts and sends
     them with the slot width ``S`` that any sum of the ``v`` fits.
Per level (``_grow_level``):
  4. The label holder sends every row's node.
  5. Each passive party sums the ciphertexts of each node's sampled rows per quantile bucket
     (``Enc(sum v)`` = product; the smaller of two siblings only, the other being parent - sibling),
     turns bucket sums into left sums (prefix products), puts each feature's candidates in a
     CSPRNG order (one permutation per tree), replaces the candidates of columns it dropped
     (``colsample_bytree``) by ``Enc(0)``, packs ``(|n| - 4) / S`` of them per ciphertext
     (Horner), re-randomises every packed ciphertext (``randomness="subgroup"``: uniform on the
     subgroup holding the randomness of the label holder's encryptions) and sends them.
  6. The label holder decrypts, derives the larger siblings, computes xgboost's gain of every
     candidate (its own from its plaintext sums) and picks each node's best: a strictly positive
     gain, ties to the lowest ``(party, candidate)``; it tells each passive party the (shuffled)
     index of every node that party won.
  7. The winner maps the index to its feature and threshold (the lowest candidate of that feature
     splitting the node's sampled rows alike), keeps them, and returns which of the node's rows go
     left. The label holder applies its own winners itself.
After the levels (``_leaf_weights``):
  8. The label holder computes the leaf weights ``-eta G/(H+lambda)`` from the same quantised sums,
     updates the margins and reports the tree with the training loss (it knows it anyway).

The split finding is exact on the quantised gradients: the plaintext replay
(:mod:`protocols.xgb.reference`) rebuilds the same trees. With the squared loss the label holder
trains on ``(y - base) / 2^s`` (its private power of two, :func:`protocols.xgb.config.target_shift`)
and checks every residual against the int64 range before quantising (the run-time guard).

Threat model: semi-honest, no collusion. What each party learns:

- label holder: for every node and every passive party's candidate split, the left sums
  ``(G_L, H_L)`` (in an order shuffled within each feature, the same for all nodes of a tree;
  ``H_L`` grows with the threshold, so the order can be recovered), which rows go left at every
  split (hence every node's rows), each passive party's number of candidates, and at prediction
  the leaves each passive party's splits allow for every row. It never sees a passive party's
  feature values or thresholds; the packed sums it receives are re-randomised, so their
  ciphertexts tell it nothing beyond the sums.
- passive party: the number of rows, the options digest, the public key, the slot
  width of each tree (about ``log2`` of the sums of ``|g|`` and ``h``), which rows each tree
  samples, every node's rows (the node assignment), which nodes it owns; ``g``, ``h`` and the
  labels only as ciphertexts (IND-CPA). Its model part holds only its own splits.
- The leaf weights stay with the label holder in plaintext (as in SecureBoost).
"""

from __future__ import annotations

from typing import Any

import gmpy2
import numpy as np
import scipy.sparse as sp

from mpcml.he import EncryptedArray, generate_keypair, object_array, pack_ciphertexts, slots_per_ciphertext
from mpcml.party import Party

from ..common import logistic
from ..progress import Progress
from . import messages, setup
from .config import GH_FRAC_BITS, XGBConfig, guard_error, sample_columns, sample_rows
from .model import PartyModel
from .trees import PartyTrees, QuantileBinner, cumulative_histogram, gradients, leaf_weight, split_gains


def derived_nodes(counts: dict[int, int]) -> set[int]:
    """Nodes of a level whose sums are parent - sibling rather than computed: the larger non-empty
    sibling of each pair with both children non-empty (ties: the right one). Both sides apply it."""
    derived = set()
    for left in range(min(counts), max(counts) + 1, 2):
        right = left + 1
        if left and counts.get(left, 0) and counts.get(right, 0):
            derived.add(right if counts[left] <= counts[right] else left)
    return derived


def layout(gh: np.ndarray) -> tuple[int, int]:
    """``(W, S)``: bits of the ``h`` part and of a whole slot, for sums over any subset of rows."""
    w = int(np.sum(gh[:, 1], dtype=object)).bit_length() + 1
    return w, w + int(np.sum(np.abs(gh[:, 0]), dtype=object)).bit_length() + 2


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


# --- the label holder -----------------------------------------------------------------------------


class _LabelHolder:
    """The label holder's state: its binner, key pair, targets and margins."""

    def __init__(self, party: Party, config: XGBConfig, X: np.ndarray, y: np.ndarray) -> None:
        self.party, self.config, self.X = party, config, X
        self.bins = setup.binner(config, X)
        self.buckets = self.bins.transform(X)
        self.n = X.shape[0]
        self.stream = config.sampler(party)
        self.base, self.shift, self.targets = setup.label_start(config, y)
        self.margin = np.full(self.n, self.base if config.loss == "logistic" else 0.0)

    def setup(self) -> None:
        """Steps 1-2: facts, the range analysis, the key pair."""
        self.plan, facts = setup.agree(self.party, self.config, setup.facts(self.config, self.X, self.bins),
                                       self.config.passive)
        self.counts = {pid: facts[pid]["candidates"] for pid in self.config.passive}
        public_key, self.private_key = generate_keypair(self.config.he, self.config.key_bits)
        self.party.send_all(self.config.passive, messages.KeyMessage(public_key).to_wire())
        self.private_key.prepare()

    def send_gradients(self, t: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """Step 3: ``(sampled rows, their quantised (g, h) as int64 (rows, 2), (W, S))``; the ciphertexts sent."""
        g, h = gradients(self.margin, self.targets, self.config.loss)
        bound = self.plan.residual_bound
        if bound is not None and np.max(np.abs(g)) > bound:
            raise guard_error(t, bound, self.config)
        rows = sample_rows(self.stream, self.n, self.config.subsample)
        gh = np.rint(np.stack([g[rows], h[rows]], axis=1) * 2.0**GH_FRAC_BITS).astype(np.int64)
        w, s = layout(gh)
        plain = [int(a) * (1 << w) + int(b) for a, b in gh]
        enc = self.private_key.encrypt_int(np.array(plain, dtype=object))
        message = messages.GradientsMessage(rows, [int(c) for c in enc.ciphertexts], s)
        self.party.send_all(self.config.passive, message.to_wire())
        return rows, gh, (w, s)

    def grow_level(self, trees: PartyTrees, t: int, d: int, pos: np.ndarray, rows: np.ndarray, gh: np.ndarray,
                   slots: tuple[int, int], keep: np.ndarray, parents: dict[str, dict[int, np.ndarray]]) -> np.ndarray:
        """Steps 4, 6 and 7 at the label holder; returns every row's child node."""
        config, party = self.config, self.party
        nodes = np.arange(2**d - 1, 2 ** (d + 1) - 1)
        # 4. every row's node
        party.send_all(config.passive, messages.NodesMessage(pos).to_wire())
        sampled_pos = pos[rows]
        totals = node_totals(gh, sampled_pos, nodes)
        candidates = {party.id: self._own_sums(gh, rows, sampled_pos, nodes)}
        derived = derived_nodes({int(v): int(np.sum(sampled_pos == v)) for v in nodes})
        # 6. the passive parties' sums, then the best split of every node
        per_word = slots_per_ciphertext(self.private_key.public_key, slots[1])
        got = messages.gather(party, config.passive, messages.HistogramsMessage, self.private_key.public_key, len(nodes))
        for pid in config.passive:
            sums = self._decoded(got[pid].words, nodes, derived, self.counts[pid], slots, per_word)
            _derive_siblings(sums, nodes, derived, parents.get(pid, {}))
            parents[pid] = {int(v): sums[j] for j, v in enumerate(nodes)}
            candidates[pid] = sums
        masks = {party.id: keep, **{pid: np.ones(self.counts[pid], bool) for pid in config.passive}}
        best = best_splits(candidates, masks, totals, config)
        return self._apply(trees, t, nodes, best, pos)

    def _own_sums(self, gh: np.ndarray, rows: np.ndarray, sampled_pos: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Integer left sums ``(nodes, candidates, 2)`` of the label holder's own candidates."""
        out = np.zeros((len(nodes), self.bins.n_candidates, 2), dtype=np.int64)
        for j, v in enumerate(nodes):
            members = sampled_pos == v
            out[j] = cumulative_histogram(gh[members], self.buckets[rows[members]], self.bins.cuts_)
        return out

    def _decoded(self, words: list[list[int]], nodes: np.ndarray, derived: set[int], count: int,
                 slots: tuple[int, int], per_word: int) -> np.ndarray:
        """Integer left sums ``(nodes, count, 2)`` from a passive party's packed words (0 where none were sent)."""
        w, s = slots
        expected = -(-count // per_word)
        out = np.zeros((len(nodes), count, 2), dtype=np.int64)
        public_key = self.private_key.public_key
        for j, node_words in enumerate(words):
            if len(node_words) not in ((0,) if int(nodes[j]) in derived else (0, expected)):
                raise ValueError(f"a passive party sent {len(node_words)} packed words for node {int(nodes[j])}, "
                                 f"expected {expected}")
            if not node_words:
                continue
            plain = self.private_key.decrypt_int(public_key.array(object_array(node_words)))
            pairs = [pair for word in plain for pair in _unpack(int(word), per_word, w, s)]
            out[j] = np.array(pairs[:count], dtype=np.int64)
        return out

    def _apply(self, trees: PartyTrees, t: int, nodes: np.ndarray, best: list[tuple[str, int] | None],
               pos: np.ndarray) -> np.ndarray:
        """Step 7: record or dispatch each node's winner; returns every row's child node."""
        config, party = self.config, self.party
        go_left = np.ones(self.n, dtype=bool)  # unsplit nodes send every row left
        won: dict[str, list[tuple[int, int]]] = {pid: [] for pid in config.passive}
        for j, choice in enumerate(best):
            v = int(nodes[j])
            if choice is None:
                continue
            owner, k = choice
            if owner == party.id:
                f, thr = self.bins.threshold(k)
                trees.set_split(t, v, f, thr)
                members = pos == v
                go_left[members] = self.X[members, f] < thr
            else:
                won[owner].append((v, k))
        for pid in config.passive:
            party.send(pid, messages.WinnersMessage(won[pid]).to_wire())
        for pid in config.passive:
            expected = {v: int(np.sum(pos == v)) for v, _ in won[pid]}
            for v, left in messages.receive(party, pid, messages.SplitsMessage, expected).left:
                go_left[pos == v] = left.astype(bool)
        return np.where(go_left, 2 * pos + 1, 2 * pos + 2)

    def leaf_weights(self, pos: np.ndarray, rows: np.ndarray, gh: np.ndarray) -> tuple[np.ndarray, float]:
        """Step 8: the tree's leaf weights from the quantised sums of the sampled rows; the new training loss."""
        n_leaves = 2**self.config.max_depth
        sums = node_totals(gh, pos[rows], np.arange(n_leaves - 1, 2 * n_leaves - 1)) / 2.0**GH_FRAC_BITS
        leaves = leaf_weight(sums[:, 0], sums[:, 1], self.config.learning_rate, self.config.reg_lambda)
        self.margin = self.margin + leaves[pos - (n_leaves - 1)]
        return leaves, training_loss(self.margin, self.targets, self.config.loss, self.shift)


def node_totals(gh: np.ndarray, node_of_row: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Integer sums ``(nodes, 2)`` of ``gh`` over the rows of each node."""
    totals = np.zeros((len(nodes), gh.shape[1]), dtype=gh.dtype)
    np.add.at(totals, node_of_row - nodes[0], gh)
    return totals


def best_splits(candidates: dict[str, np.ndarray], masks: dict[str, np.ndarray], totals: np.ndarray,
                config: XGBConfig) -> list[tuple[str, int] | None]:
    """Each node's winner ``(party, candidate)`` or ``None`` (no strictly positive gain), from the integer
    left sums ``(nodes, candidates, 2)`` of every party in player order; ties go to the lowest
    ``(party, candidate)``. The plaintext replay uses the same rule."""
    scale = 2.0**GH_FRAC_BITS
    g, h = totals[:, 0] / scale, totals[:, 1] / scale
    best: list[tuple[str, int] | None] = [None] * len(totals)
    top = np.zeros(len(totals))
    for pid, sums in candidates.items():
        gains = split_gains(sums[..., 0] / scale, sums[..., 1] / scale, g, h, config.reg_lambda, config.min_child_weight)
        gains = np.where(masks[pid][None, :], gains, -np.inf)
        for j in range(len(totals)):
            if gains.shape[1]:
                k = int(np.argmax(gains[j]))
                if gains[j, k] > top[j]:
                    top[j], best[j] = gains[j, k], (pid, k)
    return best


def training_loss(margin: np.ndarray, targets: np.ndarray, loss: str, shift: int) -> float:
    """Log loss (logistic) or mean squared error in the targets' units (squared) at ``margin``."""
    if loss == "logistic":
        p = np.clip(logistic(margin), 1e-15, 1 - 1e-15)
        return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))
    return float(np.mean((margin - targets) ** 2) * 4.0**shift)


def _derive_siblings(sums: np.ndarray, nodes: np.ndarray, derived: set[int], parents: dict[int, np.ndarray]) -> None:
    """Fill the ``derived`` nodes' rows in place: parent - sibling (same candidate order within a tree)."""
    row = {int(v): j for j, v in enumerate(nodes)}
    for v in derived:
        sums[row[v]] = parents[(v - 1) // 2] - sums[row[v + 1 if v % 2 else v - 1]]


def he_label_holder(party: Party, X: Any = None, y: Any = None, *, config: XGBConfig,
                    progress: Progress | None = None) -> dict[str, Any]:
    """The label holder's role (steps 1-8 of the module docstring); returns its model part
    (its own splits, every leaf weight) as :meth:`PartyModel.to_wire`."""
    X, y = setup.party_input(config, party.id, X, y)
    me = _LabelHolder(party, config, X, y)
    me.setup()
    trees = PartyTrees.empty(config.n_estimators, config.max_depth)
    leaves = np.zeros((config.n_estimators, 2**config.max_depth))
    for t in range(config.n_estimators):
        rows, gh, slots = me.send_gradients(t)
        keep = sample_columns(me.stream, len(me.bins.cuts_), config.colsample_bytree)[me.bins.candidates()[0]]
        pos = np.zeros(me.n, dtype=np.int64)
        parents: dict[str, dict[int, np.ndarray]] = {}
        for d in range(config.max_depth):
            pos = me.grow_level(trees, t, d, pos, rows, gh, slots, keep, parents)
        leaves[t], loss = me.leaf_weights(pos, rows, gh)
        if progress is not None:
            progress(t, loss=loss)
    party.send_all(config.passive, "done")
    return PartyModel("he", party.id, config.players, trees, X.shape[1], leaves, me.base, me.shift).to_wire()


# --- a passive party ------------------------------------------------------------------------------


class _Passive:
    """A passive party's state: its binner, the public key, and the encrypted left sums of the last level."""

    def __init__(self, party: Party, config: XGBConfig, X: np.ndarray) -> None:
        self.party, self.config, self.X = party, config, X
        self.bins = setup.binner(config, X)
        self.buckets = self.bins.transform(X)
        self.n = X.shape[0]
        self.stream = config.sampler(party)
        widths = [len(c) + 1 for c in self.bins.cuts_]
        self.offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        self.bucket_rows = self.buckets + self.offsets[:-1]  # row of the one-hot bucket matrix per (row, feature)

    def setup(self) -> None:
        """Steps 1-2 at a passive party."""
        leader = self.config.label_holder
        setup.agree(self.party, self.config, setup.facts(self.config, self.X, self.bins), [leader])
        self.public_key = messages.receive(self.party, leader, messages.KeyMessage, self.config.he).public_key
        self.public_key.prepare("subgroup")

    def receive_gradients(self) -> tuple[np.ndarray, EncryptedArray, int]:
        """Step 3 at a passive party: ``(sampled rows, Enc(v) per sampled row, slot width)``."""
        msg = messages.receive(self.party, self.config.label_holder, messages.GradientsMessage, self.public_key, self.n)
        enc = self.public_key.array(object_array([gmpy2.mpz(c) for c in msg.ciphertexts]))
        return msg.rows, enc, msg.slot_bits

    def left_sums(self, enc: EncryptedArray, rows: np.ndarray, members: np.ndarray) -> EncryptedArray:
        """Encrypted left sums (one ciphertext per candidate) over the sampled rows at positions ``members`` of
        ``enc`` (``rows``: the row index of every position)."""
        rows = self.bucket_rows[rows[members]]  # (k, features)
        cols = np.repeat(np.arange(len(members)), rows.shape[1])
        onehot = sp.csr_matrix((np.ones(rows.size, dtype=np.int64), (rows.ravel(), cols)),
                               shape=(int(self.offsets[-1]), len(members)))
        buckets = list(enc[members].rmatmul(onehot).ciphertexts)
        n2 = self.public_key.modulus
        out = []
        for f, c in enumerate(self.bins.cuts_):
            acc = buckets[self.offsets[f]]
            for b in range(len(c)):
                if b:
                    acc = acc * buckets[self.offsets[f] + b] % n2
                out.append(acc)
        return self.public_key.array(object_array(out))

    def shuffle(self) -> np.ndarray:
        """A fresh order of the candidates, shuffled within each feature: ``order[i]`` is sent at position ``i``."""
        feats, _ = self.bins.candidates()
        return np.concatenate([np.flatnonzero(feats == f)[self.party.rng.permutation(int(np.sum(feats == f)))]
                               for f in range(len(self.bins.cuts_))] or [np.zeros(0, np.int64)])

    def packed(self, sums: EncryptedArray, slot_bits: int, keep: np.ndarray, order: np.ndarray) -> list[int]:
        """Step 5's last part: candidates in ``order`` (dropped columns as ``Enc(0)``), packed, re-randomised."""
        cts = sums.ciphertexts.copy()
        cts[~keep] = gmpy2.mpz(1)
        words = pack_ciphertexts(self.public_key, list(cts[order]), slot_bits)
        fresh = self.public_key.array(object_array(words)).rerandomize("subgroup")
        return [int(c) for c in fresh.ciphertexts]

    def grow_level(self, trees: PartyTrees, t: int, d: int, rows: np.ndarray, enc: EncryptedArray, slot_bits: int,
                   keep: np.ndarray, order: np.ndarray, parents: dict[int, EncryptedArray]) -> dict[int, EncryptedArray]:
        """Steps 4, 5 and 7 at a passive party; returns this level's encrypted sums (for the next level)."""
        leader = self.config.label_holder
        pos = messages.receive(self.party, leader, messages.NodesMessage, self.n, d).nodes
        nodes = range(2**d - 1, 2 ** (d + 1) - 1)
        # 5. encrypted left sums of the smaller siblings, shuffled, packed, re-randomised
        sums, derived = self._level_sums(enc, rows, pos[rows], nodes, parents)
        words = [self.packed(sums[v], slot_bits, keep, order) if v in sums and v not in derived else [] for v in nodes]
        self.party.send(leader, messages.HistogramsMessage(words).to_wire())
        # 7. the nodes this party won: feature, threshold, and which rows go left
        won = messages.receive(self.party, leader, messages.WinnersMessage, list(nodes), len(order)).won
        answer = []
        for v, k in won:
            if v not in sums:
                raise ValueError(f"party {leader!r} declared a split of node {v}, which holds no sampled row")
            f, thr = self.bins.threshold(_lowest_tied(self.bins, self.buckets[rows[pos[rows] == v]], int(order[k])))
            trees.set_split(t, v, f, thr)
            answer.append((v, (self.X[pos == v, f] < thr).astype(np.uint8)))
        self.party.send(leader, messages.SplitsMessage(answer).to_wire())
        return sums

    def _level_sums(self, enc: EncryptedArray, rows: np.ndarray, pos: np.ndarray, nodes: range,
                    parents: dict[int, EncryptedArray]) -> tuple[dict[int, EncryptedArray], set[int]]:
        """Encrypted left sums of each non-empty node (:func:`derived_nodes` as parent - sibling) and the derived
        set; ``pos``: the node of every sampled row (position in ``enc``)."""
        members = {v: np.flatnonzero(pos == v) for v in nodes}
        derived = derived_nodes({v: len(m) for v, m in members.items()})
        sums = {v: self.left_sums(enc, rows, m) for v, m in members.items() if len(m) and v not in derived}
        for v in derived:
            sums[v] = parents[(v - 1) // 2] - sums[v + 1 if v % 2 else v - 1]
        return sums, derived


def _lowest_tied(bins: QuantileBinner, node_buckets: np.ndarray, candidate: int) -> int:
    """The lowest candidate of the same feature splitting the node's rows like ``candidate``.

    Candidates between two occupied buckets tie exactly; the label holder cannot pick the lowest
    (it sees them shuffled), so the owner does: the largest occupied bucket on the left side.
    """
    feats, ks = bins.candidates()
    f, k = feats[candidate], ks[candidate]
    left = node_buckets[:, f][node_buckets[:, f] <= k]
    return int(candidate - k + left.max()) if left.size else candidate


def he_passive(party: Party, X: Any = None, y: Any = None, *, config: XGBConfig,
               progress: Progress | None = None) -> dict[str, Any]:
    """A passive party's role (steps 1-7 of the module docstring); returns its model part (its splits only)."""
    X, _ = setup.party_input(config, party.id, X, y)
    me = _Passive(party, config, X)
    me.setup()
    trees = PartyTrees.empty(config.n_estimators, config.max_depth)
    for t in range(config.n_estimators):
        rows, enc, slot_bits = me.receive_gradients()
        keep = sample_columns(me.stream, len(me.bins.cuts_), config.colsample_bytree)[me.bins.candidates()[0]]
        order = me.shuffle()  # one order per tree, so the label holder can subtract siblings
        parents: dict[int, EncryptedArray] = {}
        for d in range(config.max_depth):
            parents = me.grow_level(trees, t, d, rows, enc, slot_bits, keep, order, parents)
        if progress is not None:
            progress(t)
    party.recv(config.label_holder, expect=messages.DONE, what="end of training")
    return PartyModel("he", party.id, config.players, trees, X.shape[1]).to_wire()
