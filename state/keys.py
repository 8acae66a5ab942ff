"""Redis key names of the app contract, in one place.

| key | value |
|---|---|
| ``{ns}:u:{user}`` | the user's top-k list |
| ``{ns}:popular`` | the decayed-popular list |
| ``{ns}:i:{item}`` | the items most similar to ``item`` |

Every value has the JSON shape ``{"items": [...], "scores": [...],
"updated": <unix s>, "event_ts": <newest event time used>}``
(``state/redis_store.py``: :func:`~state.redis_store.payload`).
"""

from __future__ import annotations

DEFAULT_NAMESPACE = "freshrec"

USER, ITEM, POPULAR = "user", "item", "popular"
KINDS = (USER, ITEM, POPULAR)
"""The kinds of list, and the ``kind`` label of ``freshrec_redis_keys_written_total``."""


def user_key(namespace: str, user: str) -> str:
    """Key of a user's list.

    >>> user_key("freshrec", "42")
    'freshrec:u:42'
    """
    return f"{namespace}:u:{user}"


def item_key(namespace: str, item: str) -> str:
    """Key of an item's similar-items list.

    >>> item_key("shop", "sku-1")
    'shop:i:sku-1'
    """
    return f"{namespace}:i:{item}"


def popular_key(namespace: str) -> str:
    """Key of the popular-now list.

    >>> popular_key("freshrec")
    'freshrec:popular'
    """
    return f"{namespace}:popular"


def list_key(namespace: str, kind: str, name: str) -> str:
    """Key of a list of ``kind`` (``user``, ``item`` or ``popular``) for ``name``.

    >>> list_key("ns", "user", "7"), list_key("ns", "popular", "")
    ('ns:u:7', 'ns:popular')
    """
    if kind == USER:
        return user_key(namespace, name)
    if kind == ITEM:
        return item_key(namespace, name)
    if kind == POPULAR:
        return popular_key(namespace)
    raise ValueError(f"unknown list kind {kind!r}")
