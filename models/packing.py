"""Pack rows of different lengths and lists of strings into flat numpy arrays (for snapshots)."""

from __future__ import annotations

import numpy as np


def ragged(rows: list[np.ndarray], dtype: type = np.int64) -> tuple[np.ndarray, np.ndarray]:
    """Rows of different lengths as ``(lengths, values)`` arrays (the inverse: :func:`unragged`).

    >>> lens, vals = ragged([np.array([1, 2]), np.array([], dtype=np.int64), np.array([3])])
    >>> lens.tolist(), vals.tolist(), [r.tolist() for r in unragged(lens, vals)]
    ([2, 0, 1], [1, 2, 3], [[1, 2], [], [3]])
    """
    lens = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    vals: np.ndarray = np.concatenate(rows).astype(dtype, copy=False) if rows else np.zeros(0, dtype=dtype)
    return lens, vals


def unragged(lens: np.ndarray, vals: np.ndarray) -> list[np.ndarray]:
    return np.split(vals, np.cumsum(lens)[:-1]) if lens.size else []


def strings(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as ``(byte lengths, UTF-8 bytes)`` arrays (the inverse: :func:`unstrings`).

    >>> unstrings(*strings(["a", "", "ünï"]))
    ['a', '', 'ünï']
    """
    encoded = [n.encode("utf-8", "surrogatepass") for n in names]
    lens = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    return lens, np.frombuffer(b"".join(encoded), dtype=np.uint8)


def packed_names(names: list[str]) -> dict[str, np.ndarray]:
    """:func:`strings` as a snapshot's ``name_len`` and ``name`` arrays."""
    lens, data = strings(names)
    return {"name_len": lens, "name": data}


def unstrings(lens: np.ndarray, data: np.ndarray) -> list[str]:
    raw = data.tobytes()
    out, at = [], 0
    for n in lens.tolist():
        out.append(raw[at : at + n].decode("utf-8", "surrogatepass"))
        at += n
    return out
