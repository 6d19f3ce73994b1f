"""A Beaver-masked shared matrix: open ``X - A`` once, then multiply ``X`` by fresh vectors cheaply.

This is the SecureML trick (Mohassel and Zhang, "SecureML", IEEE S&P 2017, section 4.1), used
for mini-batch training in Chen et al., "Secret sharing based secure regressions with
applications" (2020). For a shared matrix ``X`` the players draw a stored mask ``A`` from the
triple source (:meth:`~mpcml.triples.TripleSource.mask`) and open ``E = X - A`` once; ``E`` is
uniform, so it reveals nothing about ``X``. A later product with a shared vector ``v`` uses the
triple ``(A', b, A' @ b)`` for ``A' = A[rows]`` (or ``A[rows].T``,
:meth:`~mpcml.triples.TripleSource.matmul_fixed`): the players open only ``F = v - b`` and set

    X' @ v = E' @ v + A' @ F + A' @ b      (E' public, so E' @ v is local)

so each product costs one round and ``|v|`` opened elements, instead of re-opening the whole
matrix. Both ``X[rows] @ w`` (``|w|`` = features) and ``X[rows].T @ e`` (``|e|`` = batch) are
offered, which makes a gradient step cost O(batch + features) in communication.

Security: as for any Beaver product (semi-honest players, the triple source honest and not
colluding with a player); the same mask must never be opened against a different matrix.
"""

from __future__ import annotations

import numpy as np

from .ring import ring_matmul
from .tensor import SharedTensor


class MaskedMatrix:
    """A shared 2-D matrix whose masked value ``X - A`` is public to the players.

    Construct it at every player with their share of the same matrix (one round, ``X.size``
    elements sent per player). Every player must then call the same products in the same order
    with the same public ``rows``.
    """

    def __init__(self, x: SharedTensor) -> None:
        if not isinstance(x, SharedTensor):
            raise TypeError(f"x must be a SharedTensor, got {type(x).__name__}")
        if x.ndim != 2:
            raise ValueError(f"x must be a 2-D shared matrix, got shape {x.shape}")
        self.session = x.session
        self.shape = x.shape
        self.handle, mask_share = self.session.triples.mask(x.shape)
        (self.opened,) = self.session.open([x.share - mask_share])

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
        public = self.opened if rows is None else self.opened[rows]
        if transpose:
            public = public.T
        a, b, c = self.session.triples.matmul_fixed(self.handle, v.shape, rows, transpose)
        (f,) = self.session.open([v.share - b])
        z = c + ring_matmul(public, v.share) + ring_matmul(a, f)
        return SharedTensor(self.session, self.session.truncate(z) if truncate else z)

    def matmul(self, w: SharedTensor, rows: np.ndarray | None = None, *, truncate: bool = True) -> SharedTensor:
        """Shares of ``X[rows] @ w``: one round opening ``|w|`` elements (plus truncation)."""
        return self.product(w, rows, truncate=truncate)

    def t_matmul(self, e: SharedTensor, rows: np.ndarray | None = None, *, truncate: bool = True) -> SharedTensor:
        """Shares of ``X[rows].T @ e``: one round opening ``|e|`` elements (plus truncation)."""
        return self.product(e, rows, transpose=True, truncate=truncate)

    def release(self) -> None:
        """Let the triple source forget the stored mask."""
        self.session.triples.release(self.handle)
