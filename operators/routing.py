"""Keys that land on a chosen Bytewax worker, and the user -> shard map.

Bytewax sends each key of a stateful step to worker
``siphash13(key) % workers`` (Rust's default hasher of a ``String``:
SipHash-1-3 with zero keys over the UTF-8 bytes and a ``0xff``
terminator; checked against bytewax 0.21.1 in ``tests/test_routing.py``).
With few keys that spread is uneven (ARCHITECTURE "Key routing"), so the
flow does not leave it to chance: :func:`worker_keys` finds one key per
worker that lands exactly there, and every per-worker step (user shards,
rankers) uses those keys.
"""

from __future__ import annotations

import bisect
import struct
import zlib
from collections.abc import Sequence

_M = 0xFFFFFFFFFFFFFFFF


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def siphash13(data: bytes) -> int:
    """SipHash-1-3 with keys ``(0, 0)``, as Rust's ``DefaultHasher::new()``.

    >>> hex(siphash13(b""))
    '0xd1fba762150c532c'
    """
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573

    def sip_round() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _M
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _M
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _M
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _M
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = struct.unpack_from("<Q", data, i)[0]
        v3 ^= m
        sip_round()
        v0 ^= m
    b = (n & 0xFF) << 56
    for i, ch in enumerate(data[end:]):
        b |= ch << (8 * i)
    v3 ^= b
    sip_round()
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(3):
        sip_round()
    return v0 ^ v1 ^ v2 ^ v3


def bytewax_worker(key: str, workers: int) -> int:
    """The worker Bytewax 0.21 routes a state key to.

    >>> [bytewax_worker(k, 3) for k in ("k0", "k1", "k2", "k3")]
    [1, 1, 0, 0]
    """
    return siphash13(key.encode() + b"\xff") % workers


def worker_keys(prefix: str, workers: int) -> list[str]:
    """One key per worker, ``keys[w]`` routed to worker ``w``.

    >>> keys = worker_keys("shard", 4)
    >>> [bytewax_worker(k, 4) for k in keys]
    [0, 1, 2, 3]
    """
    keys: list[str | None] = [None] * workers
    n = 0
    while None in keys:
        key = f"{prefix}-{n}"
        w = bytewax_worker(key, workers)
        if keys[w] is None:
            keys[w] = key
        n += 1
    return [k for k in keys if k is not None]


def shard_bounds(workers: int, learner_share: float) -> list[float]:
    """Upper bounds in ``[0, 1)`` of each shard's slice of the user hash space.

    Shard 0 sits on the learner's worker, which also learns every event of
    the cluster, so it takes ``learner_share`` of the users another shard
    takes (1: an even spread).

    >>> shard_bounds(3, 0.5)
    [0.2, 0.6, 1.0]
    """
    weights = [learner_share] + [1.0] * (workers - 1)
    total, acc, out = sum(weights), 0.0, []
    for w in weights:
        acc += w
        out.append(round(acc / total, 12))
    out[-1] = 1.0
    return out


def shard_of(user: str, bounds: Sequence[float]) -> int:
    """The shard (worker) that owns ``user``'s state: a stable hash, the same in every process.

    >>> shard_of("alice", [1.0]), shard_of("alice", shard_bounds(4, 1.0)) == shard_of("alice", shard_bounds(4, 1.0))
    (0, True)
    """
    h = zlib.crc32(user.encode("utf-8", "surrogatepass")) / 4294967296.0
    return min(bisect.bisect_right(bounds, h), len(bounds) - 1)
