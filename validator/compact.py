"""Compact state for cross-record checks over millions of records.

A Python set of a million id strings costs about 100 MB; the validator must stay under 100 MB
for a million records. The structures here keep the 64-bit hash of each key, sorted, in
segments (``array('Q')``) chosen by the hash's top bits: 8 bytes per key and a few percent, with
no table to rehash and no doubling that would briefly need three times the memory. A lookup
is a binary search in one segment of at most a few hundred keys; an insertion moves at most a
few kilobytes. When the segments fill up, each is cut in two at the next bit.

Hand-written because no standard-library structure stores fixed-size keys this densely. Two
different keys share a 64-bit hash with probability about n^2 / 2^65: 3e-8 for a million
keys; str hashes are salted per process, which is all a single validation run needs (forked
worker processes share the salt, so they may compute the hashes).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any

_MASK = 0xFFFFFFFFFFFFFFFF
# Segments are cut in two when they hold this many keys on average (a binary search of about
# nine steps; an insertion moves a few kilobytes at most).
_SEGMENT = 512
_FIRST_BITS = 4  # 16 segments to start with


def key_of(item: Any) -> int:
    """The 64-bit key an item is stored under."""
    return hash(item) & _MASK


class DigestSet:
    """A set of hashable keys (strings, tuples of scalars) stored as 64-bit hashes."""

    __slots__ = ("_count", "_limit", "_segments", "_shift")

    def __init__(self) -> None:
        self._segments = [array("Q") for _ in range(1 << _FIRST_BITS)]
        self._shift = 64 - _FIRST_BITS
        self._count = 0
        self._limit = _SEGMENT << _FIRST_BITS

    def __len__(self) -> int:
        return self._count

    key_of = staticmethod(key_of)

    def add(self, item: Any) -> bool:
        """Insert; True when the item was not yet present."""
        return self.add_hash(hash(item))

    def add_hash(self, value: int) -> bool:
        """Insert by a precomputed ``hash()`` (of a key made in a forked worker, which shares
        the hash seed); True when it was not yet present."""
        key = value & _MASK
        segment = self._segments[key >> self._shift]
        index = bisect_left(segment, key)
        if index < len(segment) and segment[index] == key:
            return False
        segment.insert(index, key)
        self._count += 1
        if self._count > self._limit:
            self._split()
        return True

    def __contains__(self, item: object) -> bool:
        try:
            value = hash(item)
        except TypeError:
            return False
        return self.contains_hash(value)

    def contains_hash(self, value: int) -> bool:
        """Whether a key with this ``hash()`` is present."""
        key = value & _MASK
        segment = self._segments[key >> self._shift]
        index = bisect_left(segment, key)
        return index < len(segment) and segment[index] == key

    def _split(self) -> None:
        old, shift = self._segments, self._shift - 1
        new: list[array[int]] = []
        for prefix, segment in enumerate(old):
            old[prefix] = _EMPTY  # freed as soon as it is cut: never two copies of the set
            middle = bisect_left(segment, ((prefix << 1) | 1) << shift)
            new += (segment[:middle], segment[middle:])
        self._segments, self._shift, self._limit = new, shift, self._limit * 2


_EMPTY: array[int] = array("Q")


class DigestMap:
    """Keys (as 64-bit hashes) to non-negative integers (rows of a table kept elsewhere)."""

    __slots__ = ("_count", "_keys", "_limit", "_shift", "_values")

    def __init__(self) -> None:
        self._keys = [array("Q") for _ in range(1 << _FIRST_BITS)]
        self._values = [array("q") for _ in range(1 << _FIRST_BITS)]
        self._shift = 64 - _FIRST_BITS
        self._count = 0
        self._limit = _SEGMENT << _FIRST_BITS

    def __len__(self) -> int:
        return self._count

    def get_hash(self, value: int) -> int | None:
        key = value & _MASK
        prefix = key >> self._shift
        keys = self._keys[prefix]
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            return self._values[prefix][index]
        return None

    def set_hash(self, value: int, row: int) -> None:
        key = value & _MASK
        prefix = key >> self._shift
        keys = self._keys[prefix]
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            self._values[prefix][index] = row
            return
        keys.insert(index, key)
        self._values[prefix].insert(index, row)
        self._count += 1
        if self._count > self._limit:
            self._keys, self._values, self._shift = _split_columns(
                self._keys, self._values, self._shift
            )
            self._limit *= 2


class MaxMap:
    """Keys (as 64-bit hashes) to the largest float seen for them, with an integer tag.

    Used to keep, per product and period, the worst nonconforming fraction any capability
    record implies, and which record implied it: 24 bytes per key instead of ~250.
    """

    __slots__ = ("_count", "_keys", "_limit", "_shift", "_tags", "_values")

    def __init__(self) -> None:
        self._keys = [array("Q") for _ in range(1 << _FIRST_BITS)]
        self._values = [array("d") for _ in range(1 << _FIRST_BITS)]
        self._tags = [array("q") for _ in range(1 << _FIRST_BITS)]
        self._shift = 64 - _FIRST_BITS
        self._count = 0
        self._limit = _SEGMENT << _FIRST_BITS

    def __len__(self) -> int:
        return self._count

    def update(self, item: Any, value: float, tag: int) -> None:
        """Keep ``value`` (and ``tag``) for ``item`` if it is the largest so far."""
        self.update_hash(hash(item), value, tag)

    def update_hash(self, value_hash: int, value: float, tag: int) -> None:
        """:meth:`update` by a precomputed ``hash()`` of the key."""
        key = value_hash & _MASK
        prefix = key >> self._shift
        keys = self._keys[prefix]
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            values = self._values[prefix]
            if value > values[index]:
                values[index] = value
                self._tags[prefix][index] = tag
            return
        keys.insert(index, key)
        self._values[prefix].insert(index, value)
        self._tags[prefix].insert(index, tag)
        self._count += 1
        if self._count > self._limit:
            self._keys, self._values, self._tags, self._shift = _split_columns(
                self._keys, self._values, self._tags, self._shift
            )
            self._limit *= 2

    def get(self, item: Any) -> tuple[float, int] | None:
        """The largest value and its tag, or None."""
        return self.get_hash(hash(item))

    def get_hash(self, value_hash: int) -> tuple[float, int] | None:
        """:meth:`get` by a precomputed ``hash()`` of the key."""
        key = value_hash & _MASK
        prefix = key >> self._shift
        keys = self._keys[prefix]
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            return self._values[prefix][index], self._tags[prefix][index]
        return None


def _split_columns(*columns_and_shift: Any) -> Any:
    """Cut every segment of sorted keys (the first column) and of the columns beside it in two
    at the next bit; the last argument is the current shift. Returns the new columns and
    shift."""
    *columns, shift = columns_and_shift
    keys = columns[0]
    shift -= 1
    new: list[list[array[Any]]] = [[] for _ in columns]
    for prefix in range(len(keys)):
        middle = bisect_left(keys[prefix], ((prefix << 1) | 1) << shift)
        for column, target in zip(columns, new, strict=True):
            segment = column[prefix]
            column[prefix] = None  # freed as soon as it is cut
            target += (segment[:middle], segment[middle:])
    return (*new, shift)
