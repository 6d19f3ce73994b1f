"""A shared matrix multiplied by many fresh vectors: the SecureML masked matrix, or its replicated equivalent.

``"beaver"`` engine: the SecureML trick (Mohassel and Zhang, "SecureML", IEEE S&P 2017, section
4.1), used for mini-batch training in Chen et al., "Secret sharing based secure regressions with
applications" (2020). For a shared matrix ``X`` the players draw a stored mask ``A`` from the
triple source (:meth:`~mpcml.triples.TripleSource.mask`) and open ``E = X - A`` once; ``E`` is
uniform, so it reveals nothing about ``X``. A later product with a shared vector ``v`` uses the
triple ``(A', b, A' @ b)`` for ``A' = A[rows]`` (or ``A[rows].T``,
:meth:`~mpcml.triples.TripleSource.matmul_fixed`): the players open only ``F = v - b`` and set

    X' @ v = E' @ v + A' @ F + A' @ b      (E' public, so E' @ v is local)

so each product costs one round and ``|v|`` opened elements, instead of re-opening the whole
matrix. Both ``X[rows] @ w`` (``|w|`` = features) and ``X[rows].T @ e`` (``|e|`` = batch) are
offered, which makes a gradient step cost O(batch + features) in communication.

``"rss3"`` engine: nothing is opened at set-up; each product is a replicated product, which
sends only its result (one message of ``|X' v|`` elements per player, one round): the same
O(batch + features) per gradient step, with no set-up cost.

Security: that of the engine's products (semi-honest; for ``"beaver"`` the triple source honest
and not colluding with a player, and the same mask never opened against a different matrix).
"""

from __future__ import annotations

import numpy as np

from .tensor import SharedTensor
from .triples import matmul_shape


class MaskedMatrix:
    """A shared 2-D matrix prepared for many products with fresh shared vectors.

    Construct it at every player with their share of the same matrix (``"beaver"``: one round,
    ``X.size`` elements sent per player; ``"rss3"``: free). Every player must then call the same
    products in the same order with the same public ``rows``.
    """

    def __init__(self, x: SharedTensor) -> None:
        if not isinstance(x, SharedTensor):
            raise TypeError(f"x must be a SharedTensor, got {type(x).__name__}")
        if x.ndim != 2:
            raise ValueError(f"x must be a 2-D shared matrix, got shape {x.shape}")
        self.session = x.session
        self.shape = x.shape
        self._prepared = self.session.engine.prepare_matrix(x.share)

    def _rows(self, rows: np.ndarray | None) -> np.ndarray | None:
        if rows is None:
            return None
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= self.shape[0])):
            raise ValueError(f"rows must be a 1-D array of row indices in [0, {self.shape[0]})")
        return rows

    def product(
        self, v: SharedTensor, rows: np.ndarray | None = None, *, transpose: bool = False, truncate: bool = True
    ) -> SharedTensor:
        """Shares of ``X[rows] @ v`` (or ``X[rows].T @ v`` with ``transpose``); one round plus truncation.

        With ``truncate=False`` the result keeps ``2 * frac_bits`` fractional bits, for callers
        that fold a public scaling into a single later truncation.
        """
        if not isinstance(v, SharedTensor) or v.session is not self.session:
            raise TypeError("v must be a SharedTensor of the same session")
        rows = self._rows(rows)
        height = self.shape[0] if rows is None else len(rows)
        matmul_shape((self.shape[1], height) if transpose else (height, self.shape[1]), v.shape)
        bits = self.session.frac_bits if truncate else 0
        return SharedTensor(self.session, self.session.engine.matrix_product(self._prepared, v.share, rows, transpose, bits))

    def matmul(self, w: SharedTensor, rows: np.ndarray | None = None, *, truncate: bool = True) -> SharedTensor:
        """Shares of ``X[rows] @ w``: one round (``"beaver"``: ``|w|`` elements opened) plus truncation."""
        return self.product(w, rows, truncate=truncate)

    def t_matmul(self, e: SharedTensor, rows: np.ndarray | None = None, *, truncate: bool = True) -> SharedTensor:
        """Shares of ``X[rows].T @ e``: one round (``"beaver"``: ``|e|`` elements opened) plus truncation."""
        return self.product(e, rows, transpose=True, truncate=truncate)

    def release(self) -> None:
        """Let the engine forget the matrix (``"beaver"``: the triple source's stored mask)."""
        self.session.engine.release_matrix(self._prepared)
