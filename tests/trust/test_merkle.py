"""RFC 9162 Merkle trees: published vectors and exhaustive checks against the RFC's recursions."""

from __future__ import annotations

import hashlib

import pytest

from sqm.trust import TrustError, VerificationError
from sqm.trust.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# The Certificate Transparency test leaves and roots (RFC 6962 reference implementation data).
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]  # fmt: skip
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (0, 1): [],
}  # fmt: skip
CONSISTENCY = {
    (1, 1): [],
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}  # fmt: skip


# --- the RFC's recursive definitions, written out as the reference -----------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH (RFC 9162 section 2.1.1)."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return leaf_hash(d[0])
    k = _k(len(d))
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH (RFC 9162 section 2.1.3.1)."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF (RFC 9162 section 2.1.4.1)."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def _data(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


def _tree(leaves: list[bytes]) -> MemoryTree:
    tree = MemoryTree()
    for leaf in leaves:
        tree.append(leaf)
    return tree


# --- published vectors --------------------------------------------------------------------------


def test_roots_match_the_ct_vectors() -> None:
    tree = _tree(LEAVES)
    assert tree.root(0) == EMPTY_ROOT
    assert [tree.root(n).hex() for n in range(1, 9)] == ROOTS


@pytest.mark.parametrize(("index", "size"), sorted(INCLUSION))
def test_inclusion_proofs_match_the_ct_vectors(index: int, size: int) -> None:
    tree = _tree(LEAVES)
    proof = inclusion_proof(tree, index, size)
    assert [p.hex() for p in proof] == INCLUSION[(index, size)]
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, tree.root(size))


@pytest.mark.parametrize(("old", "new"), sorted(CONSISTENCY))
def test_consistency_proofs_match_the_ct_vectors(old: int, new: int) -> None:
    tree = _tree(LEAVES)
    proof = consistency_proof(tree, old, new)
    assert [p.hex() for p in proof] == CONSISTENCY[(old, new)]
    verify_consistency(old, new, proof, tree.root(old), tree.root(new))


# --- exhaustive small trees against the recursive definitions ---------------------------------

SIZES = range(1, 66)


def test_every_root_equals_mth() -> None:
    data = _data(max(SIZES))
    tree = _tree(data)
    for n in SIZES:
        assert tree.root(n) == mth(data[:n])


def test_every_inclusion_proof_equals_path_and_verifies() -> None:
    data = _data(40)
    tree = _tree(data)
    for n in range(1, 41):
        head = tree.root(n)
        for m in range(n):
            proof = inclusion_proof(tree, m, n)
            assert proof == path(m, data[:n])
            verify_inclusion(leaf_hash(data[m]), m, n, proof, head)


def test_every_consistency_proof_equals_subproof_and_verifies() -> None:
    data = _data(40)
    tree = _tree(data)
    for n in range(1, 41):
        for m in range(1, n + 1):
            proof = consistency_proof(tree, m, n)
            assert proof == subproof(m, data[:n], True)
            verify_consistency(m, n, proof, tree.root(m), tree.root(n))


# --- what must fail -----------------------------------------------------------------------------


def test_every_altered_inclusion_proof_fails() -> None:
    data = _data(13)
    tree = _tree(data)
    head = tree.root(13)
    for m in range(13):
        proof = inclusion_proof(tree, m, 13)
        for i in range(len(proof)):
            bad = list(proof)
            bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
            with pytest.raises(VerificationError):
                verify_inclusion(leaf_hash(data[m]), m, 13, bad, head)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf_hash(data[m]), m, 13, proof[:-1], head)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf_hash(b"forged"), m, 13, proof, head)
        with pytest.raises(VerificationError):
            verify_inclusion(leaf_hash(data[m]), m, 13, [*proof, head], head)


def test_consistency_against_a_rewritten_history_fails() -> None:
    data = _data(20)
    tree = _tree(data)
    forked = _tree([*data[:7], b"rewritten", *data[8:]])
    for m in range(8, 20):
        proof = consistency_proof(tree, m, 20)
        with pytest.raises(VerificationError):
            verify_consistency(m, 20, proof, forked.root(m), tree.root(20))
        with pytest.raises(VerificationError):
            verify_consistency(m, 20, proof, tree.root(m), forked.root(20))
    with pytest.raises(VerificationError):
        verify_consistency(5, 3, [], tree.root(5), tree.root(3))
    with pytest.raises(VerificationError):
        verify_consistency(3, 7, [], tree.root(3), tree.root(7))


def test_bad_requests_and_malformed_nodes() -> None:
    tree = _tree(_data(4))
    with pytest.raises(TrustError):
        inclusion_proof(tree, 4, 4)
    with pytest.raises(TrustError):
        consistency_proof(tree, 5, 4)
    with pytest.raises(TrustError):
        tree.root(5)
    with pytest.raises(TrustError):
        verify_inclusion(leaf_hash(b"x"), 0, 4, [b"short"], tree.root(4))


def test_a_consistency_proof_from_the_empty_tree_needs_the_empty_root() -> None:
    tree = MemoryTree()
    for number in range(5):
        tree.append(bytes([number]))
    verify_consistency(0, 5, [], EMPTY_ROOT, tree.root())
    with pytest.raises(VerificationError, match="empty tree"):
        verify_consistency(0, 5, [], b"anything", tree.root())
