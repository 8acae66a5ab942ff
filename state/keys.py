"""Redis key names of the app contract, in one place.

| key | value |
|---|---|
| ``{ns}:u:{user}`` | the user's top-k list |
| ``{ns}:popular`` | the decayed-popular list |
| ``{ns}:i:{item}`` | the items most similar to ``item`` |

Every value has the JSON shape ``{"items": [...], "scores": [...],
"updated": <unix s>, "event_ts": <newest event time used>}``.
"""

from __future__ import annotations

DEFAULT_NAMESPACE = "freshrec"


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
