"""Growable numpy arrays: amortised O(1) appends of rows."""

from __future__ import annotations

import numpy as np


def grown(rows: int) -> int:
    """The rows a buffer of ``rows`` grows to (1.5x): appends cost amortised O(1)."""
    return int(rows * 1.5) + 16


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
    new_rows = max(min_rows, grown(rows))
    shape = (new_rows, *array.shape[1:])
    out = np.zeros(shape, dtype=array.dtype) if fill == 0 else np.full(shape, fill, dtype=array.dtype)  # zeros: lazy
    out[:rows] = array
    return out


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted array starts.

    >>> run_starts(np.array([1, 1, 2, 5, 5, 5])).tolist()
    [0, 2, 3]
    """
    if sorted_values.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.empty(sorted_values.shape[0], dtype=np.bool_)
    first[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=first[1:])
    return np.flatnonzero(first)


def stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for non-negative int64 ``keys``, 3-4x faster.

    Each key is packed with its position into one int64 and the packed
    values are sorted (``np.sort`` has SIMD paths; ``argsort`` of 96k keys
    took 5.1 ms, this 1.4 ms, numpy 2.4 here): ties keep their order, as a
    stable sort's do. Falls back to ``argsort`` when the packing would
    overflow.

    >>> stable_order(np.array([5, 1, 5, 0, 1])).tolist()
    [3, 1, 4, 0, 2]
    """
    n = keys.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    bits = max(n - 1, 1).bit_length()
    if int(keys.max()) >= 1 << (62 - bits) or int(keys.min()) < 0:
        return np.argsort(keys, kind="stable")
    packed = np.sort((keys.astype(np.int64, copy=False) << bits) | np.arange(n, dtype=np.int64))
    packed &= (1 << bits) - 1
    return packed


def sum_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-negative int64 ``keys``, sorted, and the sum of the ``values`` of each (in their order).

    >>> k, v = sum_by_key(np.array([5, 1, 5, 0]), np.array([1.0, 2.0, 3.0, 4.0]))
    >>> k.tolist(), v.tolist()
    ([0, 1, 5], [4.0, 2.0, 4.0])
    """
    order = stable_order(keys)
    keys, values = keys[order], values[order]
    starts = run_starts(keys)
    return keys[starts], np.add.reduceat(values, starts)


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted (``np.unique`` without its fixed cost: 27 -> 6 us for 400 values, numpy 2.4).

    >>> unique_sorted(np.array([3, 1, 3, 2])).tolist()
    [1, 2, 3]
    """
    s = np.sort(values)
    return s[run_starts(s)] if s.shape[0] > 1 else s
