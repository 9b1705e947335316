"""Compact state for cross-record checks over millions of records.

A Python set of a million id strings costs about 100 MB; the validator must stay under 100 MB
for a million records. :class:`DigestSet` keeps 8-byte BLAKE2b digests of the keys in an
open-addressing table inside one bytearray (about 16 bytes per key). Hand-written because no
standard-library structure stores fixed-size keys this densely. A 64-bit digest collides with
probability about n^2 / 2^65: 3e-8 for a million keys.
"""

from __future__ import annotations

from hashlib import blake2b

_EMPTY = bytes(8)


def digest(key: str) -> bytes:
    """The 8-byte digest a key is stored as (never all zero: zero marks an empty slot)."""
    value = blake2b(key.encode("utf-8"), digest_size=8).digest()
    return value if value != _EMPTY else b"\x00" * 7 + b"\x01"


class DigestSet:
    """A set of strings stored as 8-byte digests; `add` says whether the key was new."""

    def __init__(self, capacity: int = 1024) -> None:
        size = 1
        while size < capacity * 2:
            size *= 2
        self._slots = bytearray(size * 8)
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _find(self, key: bytes) -> tuple[int, bool]:
        index = int.from_bytes(key, "little") & self._mask
        slots = self._slots
        while True:
            offset = index * 8
            current = slots[offset : offset + 8]
            if current == key:
                return offset, True
            if current == _EMPTY:
                return offset, False
            index = (index + 1) & self._mask

    def add(self, item: str) -> bool:
        """Insert; True when the item was not yet present."""
        key = digest(item)
        offset, present = self._find(key)
        if present:
            return False
        self._slots[offset : offset + 8] = key
        self._count += 1
        if self._count * 2 > self._mask + 1:
            self._grow()
        return True

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and self._find(digest(item))[1]

    def _grow(self) -> None:
        old = self._slots
        self._slots = bytearray(len(old) * 2)
        self._mask = len(self._slots) // 8 - 1
        for offset in range(0, len(old), 8):
            key = bytes(old[offset : offset + 8])
            if key != _EMPTY:
                slot, _ = self._find(key)
                self._slots[slot : slot + 8] = key
