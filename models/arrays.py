"""Growable numpy arrays: amortised O(1) appends of rows."""

from __future__ import annotations

import numpy as np


def grow(array: np.ndarray, min_rows: int, fill: float = 0) -> np.ndarray:
    """Return ``array`` with at least ``min_rows`` rows, growing by 1.5x.

    New rows are filled with ``fill``. The input is returned unchanged when
    it is already large enough, so callers can write
    ``a = grow(a, n)`` on every append.

    Examples
    --------
    >>> a = grow(np.zeros((2, 3)), 5, fill=-1)
    >>> a.shape[0] >= 5, a[4].tolist()
    (True, [-1.0, -1.0, -1.0])
    """
    rows = array.shape[0]
    if rows >= min_rows:
        return array
    new_rows = max(min_rows, int(rows * 1.5) + 16)
    out = np.full((new_rows,) + array.shape[1:], fill, dtype=array.dtype)
    out[:rows] = array
    return out
