"""Top-k selection: the one place every ranking picks its best items."""

from __future__ import annotations

import numpy as np


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values of a 1-D ``score``, best first (ties: lower position first).

    Excluded items carry ``-inf`` and sort last; :func:`top_finite` drops them.

    Examples
    --------
    >>> top_k(np.array([0.1, 0.9, 0.5, 0.9]), 3).tolist()
    [1, 3, 2]
    >>> top_k(np.array([1.0]), 5).tolist()
    [0]
    """
    n = score.shape[0]
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= n:
        return np.argsort(-score, kind="stable")
    part = np.argpartition(-score, k - 1)[:k]
    # argpartition does not keep ties in order; a stable sort of the
    # chosen positions (sorted first) does.
    part.sort()
    return part[np.argsort(-score[part], kind="stable")]


def top_finite(score: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_k` without the excluded (``-inf``) positions.

    >>> top_finite(np.array([0.2, -np.inf, 0.7]), 3).tolist()
    [2, 0]
    """
    top = top_k(score, k)
    return top[np.isfinite(score[top])]


def top_k_rows(score: np.ndarray, k: int) -> list[np.ndarray]:
    """:func:`top_finite` of every row of a 2-D ``score``: one partition for the whole block.

    >>> [r.tolist() for r in top_k_rows(np.array([[0.1, 0.3, -np.inf], [5.0, 4.0, 3.0]]), 2)]
    [[1, 0], [0, 1]]
    """
    rows, n = score.shape
    k = min(k, n)
    if rows == 0 or k <= 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(rows)]
    if k < n:
        top = np.argpartition(score, n - k, axis=1)[:, n - k :]
        top.sort(axis=1)
    else:
        top = np.broadcast_to(np.arange(n), score.shape)
    index = np.arange(rows)[:, None]
    order = np.argsort(-score[index, top], axis=1, kind="stable")
    top = top[index, order]
    finite = np.isfinite(score[index, top]).sum(axis=1).tolist()  # -inf sort last
    return [t[:n_ok] for t, n_ok in zip(top, finite)]
