"""Compact state for cross-record checks over millions of records.

A Python set of a million id strings costs about 100 MB; the validator must stay under 100 MB
for a million records. :class:`DigestSet` keeps the 64-bit hash of each key in an
open-addressing table of unsigned 64-bit integers (8 to 16 bytes per key); :class:`MaxMap`
adds a float and an integer per key. Hand-written
because no standard-library structure stores fixed-size keys this densely. Two different keys
share a 64-bit hash with probability about n^2 / 2^65: 3e-8 for a million keys; str hashes are
salted per process, which is all a single validation run needs.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable


def _fold(value: int) -> int:
    """A hash as an unsigned 64-bit key; zero marks an empty slot, so it is never a key."""
    return (value & 0xFFFFFFFFFFFFFFFF) or 1


class DigestSet:
    """A set of hashable keys (strings, tuples of scalars) stored as 64-bit hashes."""

    def __init__(self, capacity: int = 1024) -> None:
        size = 1
        while size < capacity * 2:
            size *= 2
        self._table = array("Q", [0]) * size
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def key_of(item: Hashable) -> int:
        """The 64-bit key an item is stored under."""
        return _fold(hash(item))

    def keys(self) -> frozenset[int]:
        """Every stored key, for fast read-only membership tests with :meth:`key_of`."""
        return frozenset(key for key in self._table if key)

    def add(self, item: Hashable) -> bool:
        """Insert; True when the item was not yet present."""
        return self.add_hash(hash(item))

    def add_hash(self, value: int) -> bool:
        """Insert by a precomputed ``hash()`` (of a key made in a forked worker, which shares
        the hash seed); True when it was not yet present."""
        key = _fold(value)
        table, mask = self._table, self._mask
        index = key & mask
        while True:
            current = table[index]
            if current == key:
                return False
            if current == 0:
                table[index] = key
                self._count += 1
                if self._count * 10 > (mask + 1) * 7:
                    self._grow()
                return True
            index = (index + 1) & mask

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, Hashable):
            return False
        key = self.key_of(item)
        table, mask = self._table, self._mask
        index = key & mask
        while True:
            current = table[index]
            if current == key:
                return True
            if current == 0:
                return False
            index = (index + 1) & mask

    def _grow(self) -> None:
        old = self._table
        size = len(old) * 2
        self._table = table = array("Q", [0]) * size
        self._mask = mask = size - 1
        for key in old:
            if key:
                index = key & mask
                while table[index]:
                    index = (index + 1) & mask
                table[index] = key


class MaxMap:
    """Keys (as 64-bit hashes) to the largest float seen for them, with an integer tag.

    Used to keep, per product and period, the worst nonconforming fraction any capability
    record implies, and which record implied it: about 35 bytes per key instead of ~250.
    """

    def __init__(self, capacity: int = 1024) -> None:
        size = 1
        while size < capacity * 2:
            size *= 2
        self._allocate(size)
        self._count = 0

    def _allocate(self, size: int) -> None:
        self._keys = array("Q", [0]) * size
        self._values = array("d", [0.0]) * size
        self._tags = array("q", [0]) * size
        self._mask = size - 1

    def _slot(self, key: int) -> int:
        keys, mask = self._keys, self._mask
        index = key & mask
        while keys[index] not in (0, key):
            index = (index + 1) & mask
        return index

    def update(self, item: Hashable, value: float, tag: int) -> None:
        """Keep ``value`` (and ``tag``) for ``item`` if it is the largest so far."""
        self.update_hash(hash(item), value, tag)

    def update_hash(self, value_hash: int, value: float, tag: int) -> None:
        """:meth:`update` by a precomputed ``hash()`` of the key."""
        key = _fold(value_hash)
        slot = self._slot(key)
        if self._keys[slot] == key:
            if value > self._values[slot]:
                self._values[slot], self._tags[slot] = value, tag
            return
        self._keys[slot], self._values[slot], self._tags[slot] = key, value, tag
        self._count += 1
        if self._count * 10 > (self._mask + 1) * 7:
            self._grow()

    def _grow(self) -> None:
        keys, values, tags = self._keys, self._values, self._tags
        self._allocate(len(keys) * 2)
        for index, key in enumerate(keys):
            if key:
                slot = self._slot(key)
                self._keys[slot], self._values[slot], self._tags[slot] = (
                    key,
                    values[index],
                    tags[index],
                )

    def get(self, item: Hashable) -> tuple[float, int] | None:
        """The largest value and its tag, or None."""
        key = DigestSet.key_of(item)
        slot = self._slot(key)
        if self._keys[slot] != key:
            return None
        return self._values[slot], self._tags[slot]
