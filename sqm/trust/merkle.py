"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, proofs and their verification.

Proofs are computed from *perfect subtree hashes*: the hash of every complete, aligned block of
2^level leaves (level, index), which a log stores once when the block completes. Any range the
proof recursion asks for splits into O(log n) such blocks, so proofs cost O(log^2 n) hash
lookups in the worst case and never rehash the log. Hand-written because no maintained Python
package implements RFC 9162 proofs over externally stored subtree hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from sqm.trust.errors import TrustError, VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)  (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)  (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class SubtreeHashes(Protocol):
    """Where perfect subtree hashes live (memory, SQLite, PostgreSQL)."""

    def perfect(self, level: int, index: int) -> bytes:
        """The hash of leaves [index * 2^level, (index + 1) * 2^level), which must be complete."""
        ...


def range_hash(store: SubtreeHashes, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range the RFC recursion produces (start aligned to its left part)."""
    size = end - start
    if size <= 0:
        raise TrustError(f"empty range [{start}, {end})")
    level = size.bit_length() - 1
    if size == 1 << level and start % size == 0:
        return store.perfect(level, start >> level)
    k = _largest_power_of_two_below(size)
    return node_hash(range_hash(store, start, start + k), range_hash(store, start + k, end))


def root(store: SubtreeHashes, size: int) -> bytes:
    """The tree head for the first ``size`` leaves."""
    return EMPTY_ROOT if size == 0 else range_hash(store, 0, size)


def inclusion_proof(store: SubtreeHashes, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size])  (RFC 9162 section 2.1.3.1)."""
    if not 0 <= index < size:
        raise TrustError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:  # walk down, collecting siblings; then reverse (leaf first)
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            proof.append(range_hash(store, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(store, start, start + k))
            start = start + k
    proof.reverse()
    return proof


def consistency_proof(store: SubtreeHashes, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size])  (RFC 9162 section 2.1.4.1)."""
    if not 0 <= old_size <= new_size:
        raise TrustError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    proof: list[bytes] = []
    start, end, complete = 0, new_size, True
    m = old_size
    while True:  # SUBPROOF(m, D[start:end], complete), iteratively
        n = end - start
        if m == n:
            if not complete:
                proof.append(range_hash(store, start, end))
            break
        k = _largest_power_of_two_below(n)
        if m <= k:
            proof.append(range_hash(store, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(store, start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Verify an inclusion proof of a leaf hash (RFC 9162 section 2.1.3.2); raise if it fails."""
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        _check_hash(p)
        if sn == 0:
            raise VerificationError("the inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the inclusion proof is shorter than the tree requires")
    if r != expected_root:
        raise VerificationError("the inclusion proof does not lead to the expected root")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Verify that the tree of ``new_size`` extends the one of ``old_size`` (RFC 9162
    section 2.1.4.2); raise if it does not."""
    if not 0 <= old_size <= new_size:
        raise VerificationError(f"a tree cannot shrink from size {old_size} to {new_size}")
    if old_size == new_size:
        if proof:
            raise VerificationError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise VerificationError("the two roots of the same size differ")
        return
    if old_size == 0:
        if proof:
            raise VerificationError("a proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise VerificationError("the root of the empty tree is SHA-256 of nothing")
        return
    if not proof:
        raise VerificationError("the consistency proof is empty")
    for p in proof:
        _check_hash(p)
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("the consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the consistency proof is shorter than the trees require")
    if fr != old_root:
        raise VerificationError("the consistency proof does not reproduce the old root")
    if sr != new_root:
        raise VerificationError("the consistency proof does not reproduce the new root")


def _check_hash(value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise TrustError("a proof node is not a 32-byte SHA-256 hash")


class MemoryTree:
    """An in-memory append-only tree that keeps exactly the perfect subtree hashes.

    About two stored hashes per leaf; the storage-backed log does the same in its tables.
    """

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> int:
        """Add a leaf (its raw bytes); return its index."""
        return self.append_hash(leaf_hash(leaf))

    def append_hash(self, hashed: bytes) -> int:
        """Add a leaf by its leaf hash; return its index."""
        index = self.size
        self._levels[0].append(hashed)
        level, position = 0, index
        while position & 1:  # this leaf completes a perfect subtree one level up
            left = self._levels[level][position - 1]
            right = self._levels[level][position]
            level, position = level + 1, position >> 1
            if len(self._levels) == level:
                self._levels.append([])
            self._levels[level].append(node_hash(left, right))
        return index

    def perfect(self, level: int, index: int) -> bytes:
        try:
            return self._levels[level][index]
        except IndexError:
            raise TrustError(f"no complete subtree at level {level}, index {index}") from None

    def root(self, size: int | None = None) -> bytes:
        return root(self, self.size if size is None else size)
