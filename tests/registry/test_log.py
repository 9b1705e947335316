"""The transparency log over SQLite and PostgreSQL: batches, checkpoints, proofs and fsck."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql

from sqm.registry.db import log_checkpoints, log_entries, log_nodes, node_key, node_of
from sqm.registry.log import _FRONTIER_NODES, TransparencyLog, _pending
from sqm.trust import TrustError, merkle, timestamp
from sqm.trust.checkpoint import open_note
from tests.registry.wire import traced

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ORIGIN = "registry.sqm.example/log/2026"


@pytest.fixture(scope="module")
def authority() -> timestamp.Authority:
    return timestamp.create_authority("SQM test", NOW - timedelta(days=30))[0]


@pytest.fixture
def log(engine: Engine, authority: timestamp.Authority) -> TransparencyLog:
    return TransparencyLog(
        engine, ORIGIN, Ed25519PrivateKey.generate(), authority, clock=lambda: NOW
    )


def _fill(log: TransparencyLog, sizes: list[int]) -> list[bytes]:
    leaves = []
    for batch in sizes:
        for _ in range(batch):
            leaf = f"entry {len(leaves)}".encode()
            leaves.append(leaf)
            log.sequence(leaf)
        log.integrate()
    return leaves


def test_batches_build_the_rfc_9162_tree(log: TransparencyLog) -> None:
    leaves = _fill(log, [1, 4, 7, 13])
    reference = merkle.MemoryTree()
    for leaf in leaves:
        reference.append(leaf)
    assert log.size() == 25
    for size in (1, 5, 12, 25):
        assert log.root(size) == reference.root(size)
    signed = log.latest()
    assert signed is not None and signed.checkpoint.size == 25
    assert open_note(signed.note, log.verifier).root == reference.root()
    assert (
        timestamp.verify(
            signed.timestamp, signed.note.encode(), log.authority.ca_certificate
        ).gen_time
        == NOW
    )


def test_the_newest_checkpoint_is_read_again_after_each_batch(
    log: TransparencyLog, engine: Engine
) -> None:
    # Readers keep the newest checkpoint they read: a new batch must replace it at once, in
    # this log object and in another one over the same database (another worker).
    other = TransparencyLog(engine, ORIGIN, log.key, log.authority, clock=lambda: NOW)
    assert log.latest() is None
    for size, batch in ((1, 1), (4, 3), (9, 5)):
        _fill(log, [batch])
        for reader in (log, other):
            signed = reader.latest()
            assert signed is not None and signed.checkpoint.size == size
            assert open_note(signed.note, log.verifier).size == size
    assert log.latest() is log.latest()  # unchanged: the same object, not read again


def test_a_checkpoint_is_verified_once_until_its_row_changes(
    log: TransparencyLog, engine: Engine
) -> None:
    # Bundles name the first checkpoint holding their entry; a reader verifies each once.
    # The memo is keyed by the row itself: a row changed under it is verified again.
    _fill(log, [2, 3])
    first = log.first_holding(1)
    assert first.checkpoint.size == 2 and log.first_holding(0) is first
    assert log.first_holding(2).checkpoint.size == 5
    forged = first.note.replace(first.note.splitlines()[2], base64.b64encode(bytes(32)).decode(), 1)
    with engine.begin() as connection:
        connection.execute(
            update(log_checkpoints).where(log_checkpoints.c.size == 2).values(note=forged)
        )
    with pytest.raises(TrustError):
        log.first_holding(1)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_an_integration_takes_five_statements_whatever_it_integrates(
    log: TransparencyLog,
) -> None:
    # The log's lock is held across them, and on busy cores each took 0.7-3 ms.
    _fill(log, [5])
    for batch in ([None], [None, "a", "a", "b"], ["a", None, "c", "c", "b", None]):
        for number, chain in enumerate(batch):
            log.sequence(b'{"n": %d}' % number, chain=chain)
        with traced(log.engine) as wire:
            log.integrate()
        # BEGIN; the lock; what waits, with its chains' heads and the tree's size; the
        # batch's writes (entries, subtrees, chain heads moved and started, pending rows
        # deleted, the checkpoint), one statement however many rows; COMMIT.
        assert (wire.round_trips, wire.queries("BEGIN"), wire.statements) == (5, 1, 5)
    assert log.fsck() == []


def _perfect_subtree_hash(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1's MTH of a power-of-two number of leaves, by its definition."""
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    half = len(leaves) // 2
    return merkle.node_hash(
        _perfect_subtree_hash(leaves[:half]), _perfect_subtree_hash(leaves[half:])
    )


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_the_right_edge_read_in_sql_holds_the_trees_perfect_subtrees(
    log: TransparencyLog,
) -> None:
    # Integration sends this read with its others, so that a process that did not build the
    # tree's newest subtrees (another worker did) gets them without a round trip of its own.
    leaves: list[bytes] = []
    for size in range(0, 70):
        with log.engine.connect() as connection:
            read = {node_of(int(k)): bytes(v) for k, v in _FRONTIER_NODES.rows(connection)}
        expected, start = {}, 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                subtree = leaves[start : start + (1 << level)]
                expected[(level, start >> level)] = _perfect_subtree_hash(subtree)
                start += 1 << level
        assert read == expected, size
        leaves.append(f"entry {size}".encode())
        log.sequence(leaves[-1])
        log.integrate()


def test_proofs_verify_against_checkpoints(log: TransparencyLog) -> None:
    _fill(log, [3, 9, 5])
    size = log.size()
    head = log.root(size)
    for index in range(size):
        merkle.verify_inclusion(
            merkle.leaf_hash(log.leaf(index)), index, size, log.inclusion_proof(index, size), head
        )
    for old in range(1, size + 1):
        merkle.verify_consistency(old, size, log.consistency_proof(old, size), log.root(old), head)


def test_nothing_waiting_signs_nothing_and_a_crash_loses_nothing(log: TransparencyLog) -> None:
    assert log.integrate() is None
    for n in range(6):
        log.sequence(f"sequenced before the crash {n}".encode())
    # A new log object on the same database stands for the process after a restart.
    restarted = TransparencyLog(log.engine, ORIGIN, log.key, log.authority, clock=lambda: NOW)
    signed = restarted.integrate(limit=4)
    assert signed is not None and signed.checkpoint.size == 4
    assert restarted.integrate() is not None and restarted.size() == 6
    assert restarted.fsck() == []


def test_fsck_detects_changed_dropped_and_reordered_rows(log: TransparencyLog) -> None:
    _fill(log, [8])
    assert log.fsck() == []
    with log.engine.begin() as connection:
        connection.execute(
            update(log_entries).where(log_entries.c.idx == 3).values(leaf=b"rewritten")
        )
    assert any("entry 3" in p for p in log.fsck())
    with log.engine.begin() as connection:
        connection.execute(
            update(log_entries).where(log_entries.c.idx == 3).values(leaf=b"entry 3")
        )
    assert log.fsck() == []
    with log.engine.begin() as connection:  # swap two entries, hashes and all
        rows = {
            idx: (leaf, hashed)
            for idx, leaf, hashed in connection.execute(
                select(log_entries.c.idx, log_entries.c.leaf, log_entries.c.leaf_hash).where(
                    log_entries.c.idx.in_([4, 5])
                )
            )
        }
        for idx, other in ((4, 5), (5, 4)):
            leaf, hashed = rows[other]
            connection.execute(
                update(log_entries)
                .where(log_entries.c.idx == idx)
                .values(leaf=leaf, leaf_hash=hashed)
            )
    reordered = log.fsck()
    assert any("does not match its entries" in p for p in reordered)
    assert any("root does not match the entries" in p for p in reordered)
    with log.engine.begin() as connection:
        connection.execute(delete(log_entries).where(log_entries.c.idx == 6))
    assert any("missing" in p for p in log.fsck())


def test_fsck_detects_a_forged_subtree_hash(log: TransparencyLog) -> None:
    _fill(log, [4])
    with log.engine.begin() as connection:
        connection.execute(
            update(log_nodes).where(log_nodes.c.node == node_key(1, 0)).values(hash=bytes(32))
        )
    assert any("subtree (1, 0)" in p for p in log.fsck())


def test_chained_entries_link_in_log_order(log: TransparencyLog) -> None:
    import json

    from sqm.trust.canonical import canonical

    log.sequence(canonical({"kind": "x", "n": 0, "previousIndex": None}), chain="A")
    log.sequence(b"unchained")
    log.sequence(canonical({"kind": "x", "n": 1, "previousIndex": None}), chain="B")
    log.sequence(canonical({"kind": "x", "n": 2, "previousIndex": None}), chain="A")
    log.integrate()
    log.sequence(canonical({"kind": "x", "n": 3, "previousIndex": None}), chain="A")
    log.integrate()
    leaves = [log.leaf(i) for i in range(log.size())]
    assert leaves[1] == b"unchained"
    previous = [
        json.loads(leaf)["previousIndex"] for leaf in (leaves[0], leaves[2], leaves[3], leaves[4])
    ]
    assert previous == [None, None, 0, 3]
    assert log.fsck() == []


def test_integrations_reads_take_no_parameters_on_postgresql() -> None:
    # PostgreSQL plans a prepared statement with parameters afresh on every run: for the
    # right edge's subtrees that was 135 µs of the server's time per batch, inside the
    # log's lock, against 20 µs to run it. Without parameters, one plan serves every run.
    statements = [
        _FRONTIER_NODES.statement,
        *(_pending(10_000, further).statement for further in ((), ("ab" * 32, "cd" * 32))),
    ]
    for statement in statements:
        assert statement.compile(dialect=postgresql.dialect()).params == {}
