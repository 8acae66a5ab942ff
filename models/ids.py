"""Map external string ids to dense integer indexes."""

from __future__ import annotations


class IdMap:
    """A bidirectional map between external ids and dense indexes ``0..n-1``.

    Every per-user and per-item array in the models is indexed by these
    integers, so model state stays in a few contiguous numpy arrays.

    Examples
    --------
    >>> ids = IdMap()
    >>> ids.add("alice"), ids.add("bob"), ids.add("alice")
    (0, 1, 0)
    >>> ids.get("carol") is None, ids.name(1), len(ids)
    (True, 'bob', 2)
    """

    __slots__ = ("index", "names")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def get(self, name: str) -> int | None:
        """Return the index of ``name``, or None; never creates an entry."""
        return self.index.get(name)

    def add(self, name: str) -> int:
        """Return the index of ``name``, creating it if it is new."""
        idx = self.index.get(name)
        if idx is None:
            idx = len(self.names)
            self.index[name] = idx
            self.names.append(name)
        return idx

    def name(self, idx: int) -> str:
        """Return the external id of index ``idx``."""
        return self.names[idx]

    def __getstate__(self) -> list[str]:
        # The names alone are enough: the dict is rebuilt on load, which
        # halves the snapshot size and pickles one list instead of two.
        return self.names

    def __setstate__(self, names: list[str]) -> None:
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}
