"""Compact state for cross-record checks over millions of records.

A Python set of a million id strings costs about 100 MB; the validator must stay under 100 MB
for a million records. :class:`DigestSet` keeps the 64-bit hash of each key in an
open-addressing table of unsigned 64-bit integers (16 bytes per key at half load). Hand-written
because no standard-library structure stores fixed-size keys this densely. Two different keys
share a 64-bit hash with probability about n^2 / 2^65: 3e-8 for a million keys; str hashes are
salted per process, which is all a single validation run needs.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable


class DigestSet:
    """A set of hashable keys (strings, tuples of scalars) stored as 64-bit hashes."""

    def __init__(self, capacity: int = 1024) -> None:
        size = 1
        while size < capacity * 2:
            size *= 2
        self._table = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @staticmethod
    def _key(item: Hashable) -> int:
        return (hash(item) & 0xFFFFFFFFFFFFFFFF) or 1  # zero marks an empty slot

    def add(self, item: Hashable) -> bool:
        """Insert; True when the item was not yet present."""
        key = self._key(item)
        table, mask = self._table, self._mask
        index = key & mask
        while True:
            current = table[index]
            if current == key:
                return False
            if current == 0:
                table[index] = key
                self._count += 1
                if self._count * 2 > mask + 1:
                    self._grow()
                return True
            index = (index + 1) & mask

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, Hashable):
            return False
        key = self._key(item)
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
        self._table = table = array("Q", bytes(8 * size))
        self._mask = mask = size - 1
        for key in old:
            if key:
                index = key & mask
                while table[index]:
                    index = (index + 1) & mask
                table[index] = key
