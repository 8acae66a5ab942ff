"""Top-k selection: the one place every ranking picks its best items.

Ties are broken by position (the lower index first), so a ranking is the
same whichever way it was computed.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 32  # scores per chunk when pruning a row (see top_k_rows)


def top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values of a 1-D ``score``, best first; ``-inf`` (excluded) sorts last.

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
    if n >= 4096:  # pruned by chunks, -inf appended after the finite ones
        top = top_k_rows(score[None, :], k)[0]
        if top.shape[0] < k:
            rest = np.flatnonzero(~np.isfinite(score) | np.isnan(score))
            top = np.concatenate([top, rest[~np.isin(rest, top)][: k - top.shape[0]]])
        return top
    kth = -np.partition(-score, k - 1)[k - 1]  # (selecting from the top: many equal -inf values slow the other way)
    cand = np.flatnonzero(score >= kth)
    return cand[np.argsort(-score[cand], kind="stable")][:k]


def top_finite(score: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_k` without the excluded (``-inf``) positions.

    >>> top_finite(np.array([0.2, -np.inf, 0.7]), 3).tolist()
    [2, 0]
    """
    top = top_k(score, k)
    return top[np.isfinite(score[top])]


def top_k_rows(score: np.ndarray, k: int) -> list[np.ndarray]:
    """:func:`top_finite` of every row of a 2-D ``score``, for the whole block at once.

    A full partition of every row (``np.argpartition``) costs about 80 us
    per 10,000-item row with numpy 2.4 here. Instead the rows are cut in
    chunks of ``_CHUNK`` scores: the ``k``-th largest chunk maximum is a
    lower bound of the ``k``-th largest score (the best ``k`` chunks hold
    ``k`` scores at least that large), so only the chunks whose maximum
    reaches it can hold the top ``k``, and only their scores at or above it
    are sorted (33 -> 25 us per 10,000-item row, ``bench/RESULTS.md``).

    >>> [r.tolist() for r in top_k_rows(np.array([[0.1, 0.3, -np.inf], [5.0, 4.0, 3.0]]), 2)]
    [[1, 0], [0, 1]]
    """
    rows, n = score.shape
    if rows == 0 or k <= 0 or n == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(rows)]
    chunks = n // _CHUNK
    if chunks <= k:  # short rows: the k-th largest score itself is the bound
        if k < n:
            threshold = -np.partition(-score, k - 1, axis=1)[:, k - 1]
            row, col = np.nonzero(score >= threshold[:, None])
        else:
            row, col = np.nonzero(np.ones_like(score, dtype=np.bool_))
        value = score[row, col]
    else:
        # Chunk j holds positions j, j + chunks, j + 2 * chunks, ...: strided,
        # so that items of similar score that sit together (ids assigned by
        # popularity, say) spread over the chunks and the bound stays tight.
        full = chunks * _CHUNK
        best = score[:, :full].reshape(rows, _CHUNK, chunks).max(axis=1)
        extra = -(-(n - full) // chunks)  # the tail: position p still belongs to chunk p % chunks
        if extra:
            tail = np.full((rows, extra * chunks), -np.inf, dtype=score.dtype)
            tail[:, : n - full] = score[:, full:]
            np.maximum(best, tail.reshape(rows, extra, chunks).max(axis=1), out=best)
        threshold = -np.partition(-best, k - 1, axis=1)[:, k - 1]
        r, c = np.nonzero(best >= threshold[:, None])
        cols = c[:, None] + chunks * np.arange(_CHUNK + extra)
        inside = cols < n
        row = np.broadcast_to(r[:, None], cols.shape)[inside]
        col = cols[inside]
        value = score.ravel()[row * n + col] if score.flags.c_contiguous else score[row, col]
        keep = value >= threshold[row]
        row, col, value = row[keep], col[keep], value[keep]
    order = np.lexsort((col, -value, row))  # by row, then best first, ties by position
    row, col, value = row[order], col[order], value[order]
    at = np.searchsorted(row, np.arange(rows + 1)).tolist()
    out = []
    for r0 in range(rows):
        a, b = at[r0], min(at[r0 + 1], at[r0] + k)
        out.append(col[a:b][np.isfinite(value[a:b])])
    return out
