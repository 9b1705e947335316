"""Group commit: concurrent writes of one process share one transaction and one checkpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, bindparam, event, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from sqm.registry.db import (
    attestations,
    log_checkpoints,
    log_entries,
    log_pending,
    suppliers,
)
from sqm.registry.driver import Prepared
from sqm.registry.errors import RegistryError
from sqm.registry.group_commit import GroupCommit, Write
from sqm.registry.log import EntryRow, Integration, TransparencyLog, UnmetConditionError
from sqm.registry.timestampers import OwnTSA, TimestampUnavailableError
from sqm.trust import merkle, timestamp
from tests.registry.wire import Wire, traced

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ORIGIN = "registry.sqm.example/log/2026"
FOLLOWERS = 6


class FailingTSA:
    """A TSA that is down."""

    name = "down"

    def __init__(self, ca_certificate: x509.Certificate) -> None:
        self.ca_certificate = ca_certificate

    def stamp(self, message: bytes, serial: int) -> bytes:
        raise TimestampUnavailableError("the TSA at https://tsa.invalid did not answer")


@pytest.fixture(scope="module")
def authority() -> timestamp.Authority:
    return timestamp.create_authority("SQM test", NOW - timedelta(days=30))[0]


def _log(engine: Engine, authority: timestamp.Authority, down: bool = False) -> TransparencyLog:
    stampers = [FailingTSA(authority.ca_certificate)] if down else [OwnTSA(authority, lambda: NOW)]
    return TransparencyLog(
        engine, ORIGIN, Ed25519PrivateKey.generate(), authority, lambda: NOW, stampers
    )


def _entry(log: TransparencyLog, leaf: bytes) -> Callable[[Connection], int]:
    return lambda connection: log.sequence(leaf, connection=connection)


def _wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the writes never reached the expected state"
        time.sleep(0.001)


_NEW_SUPPLIER = Prepared(suppliers.insert())


def _entry_with_row(log: TransparencyLog, name: str) -> Write:
    """A write as an attestation's: its entry, sent without waiting for its number, then a
    row of its own (a supplier ``name``) through the driver; two statements, the second
    refused when ``name`` is taken."""

    def write(connection: Connection) -> Callable[[], int]:
        seq = log.sequence_later(name.encode(), None, connection)
        row = {"id": name, "name": name, "identity": "{}", "verification": "unverified"}
        _NEW_SUPPLIER.run(connection, {**row, "role": "supplier"})
        return seq

    return write


def _batched(
    writer: GroupCommit,
    first: Callable[[Connection], int],
    rest: list[Write],
    pipelinable: bool | list[bool] = False,
) -> tuple[Future[tuple[int, Integration]], list[Future[tuple[int, Integration]]]]:
    """Run ``first`` as a leader that waits until every write of ``rest`` has queued behind
    it, so that ``rest`` commits as one batch."""
    release = threading.Event()

    def leader(connection: Connection) -> int:
        release.wait(10)
        return first(connection)

    pool = ThreadPoolExecutor(len(rest) + 1)
    led = pool.submit(writer.run, leader)
    # The leader holds the writer lock and has taken its batch before the others arrive.
    _wait_until(lambda: writer._leading and not writer._queued)
    flags = pipelinable if isinstance(pipelinable, list) else [pipelinable] * len(rest)
    followers = [
        pool.submit(writer.run, write, flag) for write, flag in zip(rest, flags, strict=True)
    ]
    _wait_until(lambda: len(writer._queued) == len(rest))
    release.set()
    pool.shutdown(wait=True)
    return led, followers


def _batch_of_rows(
    engine: Engine, authority: timestamp.Authority, pipelinable: list[bool]
) -> tuple[TransparencyLog, list[int], Wire | None]:
    """A leader's batch, then one of writes with a row of their own (:func:`_entry_with_row`),
    pipelinable or not as given, traced on PostgreSQL; every row is stored. The log, the
    second batch's checkpoint sizes and the trace (None on SQLite)."""
    log = _log(engine, authority)
    names = [f"TEST:{n}" for n in range(len(pipelinable))]
    writes = [_entry_with_row(log, name) for name in names]
    with traced(engine) if engine.dialect.name == "postgresql" else nullcontext() as wire:
        _, followers = _batched(GroupCommit(log), _entry(log, b"leader"), writes, pipelinable)
    with engine.connect() as connection:
        stored = connection.execute(select(suppliers.c.id).order_by(suppliers.c.id)).scalars()
        assert list(stored) == names
    return log, [f.result()[1].signed.checkpoint.size for f in followers], wire


def test_pipelinable_writes_of_a_batch_reach_postgresql_with_one_round_trip_each(
    engine: Engine, authority: timestamp.Authority
) -> None:
    log, sizes, wire = _batch_of_rows(engine, authority, [True] * 4)
    assert sizes == [5] * 4
    if wire is not None:
        # Each batch: BEGIN, the lock, its writes, integration's read and writes, COMMIT.
        # The leader's one write is not pipelinable: its entry alone, a round trip of its
        # own. The four followers' writes of two statements each go with integration's read
        # (and the tree's right edge) in one round trip: 5 however many writes, not 4 + 5.
        assert wire.round_trips == (5 + 1) + 5
    assert log.fsck() == []


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_pipelined_batch_after_another_processs_batch_takes_no_round_trip_more(
    engine: Engine, authority: timestamp.Authority
) -> None:
    # Another worker's batches made the tree's newest subtrees, which this process does not
    # remember: integration asks for them with its read, in the same round trip.
    key = Ed25519PrivateKey.generate()
    other, this = (
        TransparencyLog(
            engine, ORIGIN, key, authority, lambda: NOW, [OwnTSA(authority, lambda: NOW)]
        )
        for _ in range(2)
    )
    for number in range(5):
        GroupCommit(other).run(_entry(other, b"other %d" % number))
    # psycopg prepares a statement on its sixth run, in a round trip of its own: done here.
    GroupCommit(this).run(_entry_with_row(this, "TEST:warm"), True)
    for number in range(5, 7):
        GroupCommit(other).run(_entry(other, b"other %d" % number))
    with traced(engine) as wire:
        _, integration = GroupCommit(this).run(_entry_with_row(this, "TEST:this"), True)
    assert integration.signed.checkpoint.size == 9
    assert wire.round_trips == 5  # BEGIN, the lock, the write with the reads, writes, COMMIT
    assert this.fsck() == []


def test_a_row_written_after_its_entry_names_it_in_sql(
    engine: Engine, authority: timestamp.Authority
) -> None:
    # An attestation's row takes its entry's number in SQL (with the entry in one statement
    # on PostgreSQL, through last_sequenced on SQLite), so that on
    # PostgreSQL the batch's writes need not wait for the numbers; each row must name the
    # entry written just before it, in a pipelined batch and in savepoints after a refusal.
    log = _log(engine, authority)
    writer = GroupCommit(log)
    named = EntryRow(attestations)  # PostgreSQL: one statement; SQLite: last_sequenced

    def attestation(number: int, digest: str) -> Write:
        def write(connection: Connection) -> Callable[[], int]:
            row = {"supplier": "TEST:s", "feed_sequence": number, "key_id": "k", "envelope": "{}"}
            leaf = b"attestation %d" % number
            return log.sequence_later(
                leaf, None, connection, (named, {**row, "payload_sha256": digest})
            )

        return write

    def stored() -> dict[int, tuple[int, bytes]]:
        with engine.connect() as connection:
            rows = connection.execute(
                select(attestations.c.seq, attestations.c.feed_sequence, log_entries.c.leaf).join(
                    log_entries, log_entries.c.seq == attestations.c.seq
                )
            ).all()
        return {seq: (feed, bytes(leaf)) for seq, feed, leaf in rows}

    # A batch that commits as it was first run, in one pipeline.
    _, followers = _batched(
        writer, _entry(log, b"first"), [attestation(n, f"{n}") for n in (0, 1, 2)], True
    )
    sizes = {f.result()[1].signed.checkpoint.size for f in followers}
    assert sizes == {4}  # the three in one batch, without a retry
    first = {f.result()[0]: n for n, f in zip((0, 1, 2), followers, strict=True)}
    # A batch with a refused write, which runs again in savepoints.
    writes = [attestation(n, f"digest {n}") for n in range(3, 7)]
    writes.insert(2, attestation(9, "digest 3"))  # refused: that digest is taken
    _, followers = _batched(writer, _entry(log, b"leader"), writes, True)
    with pytest.raises(IntegrityError):
        followers[2].result()
    second = {f.result()[0]: n for n, f in zip((3, 4, 9, 5, 6), followers, strict=True) if n != 9}
    rows = stored()
    assert sorted(feed for feed, _ in rows.values()) == list(range(7))
    for seq, (feed, leaf) in rows.items():
        assert leaf == b"attestation %d" % feed
        assert {**first, **second}[seq] == feed  # its own request's number
    assert log.fsck() == []


def test_an_integration_error_that_is_no_refusal_fails_the_batch_once(
    engine: Engine, authority: timestamp.Authority
) -> None:
    # Only a database error may be a write's refusal (surfacing at integration's read);
    # anything else fails the batch as it stands, not after a second run under the lock.
    calls = []

    class BrokenTSA(FailingTSA):
        def stamp(self, message: bytes, serial: int) -> bytes:
            calls.append(serial)
            raise RuntimeError("the TSA's key is unreadable")

    log = TransparencyLog(
        engine,
        ORIGIN,
        Ed25519PrivateKey.generate(),
        authority,
        lambda: NOW,
        [BrokenTSA(authority.ca_certificate)],
    )
    writes = [_entry_with_row(log, f"TEST:{n}") for n in range(3)]
    led, followers = _batched(GroupCommit(log), _entry(log, b"leader"), writes, True)
    with pytest.raises(RuntimeError):
        led.result()
    for follower in followers:
        with pytest.raises(RuntimeError, match="unreadable"):
            follower.result()
    assert len(calls) == 2  # the leader's batch, then the followers' once
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(suppliers)).scalar() == 0
    assert log.waiting() == 0 and log.size() == 0


def test_a_batch_with_a_write_that_may_not_be_pipelined_runs_without_a_pipeline(
    engine: Engine, authority: timestamp.Authority
) -> None:
    # A write through Connection.execute reads a cursor's rowcount and description before a
    # pipelined answer arrives: one such write in a batch keeps the whole batch out of one.
    _, sizes, wire = _batch_of_rows(engine, authority, [True, False, True])
    assert sizes == [4] * 3
    if wire is not None:
        assert wire.round_trips == (5 + 1) + (5 + 2 * 3)  # every statement its own


def test_a_refused_write_in_a_pipelined_batch_fails_alone(
    engine: Engine, authority: timestamp.Authority
) -> None:
    # Its refusal reaches the client with a later write's statement, or the pipeline's end;
    # the batch runs again in savepoints, where the refusal is that write's own.
    log = _log(engine, authority)
    writer = GroupCommit(log)
    writer.run(_entry_with_row(log, "TEST:taken"), pipelinable=True)
    for position in (0, 1, 2):  # refused first, in the middle, last
        names = [f"TEST:{position}:{n}" for n in range(2)]
        writes = [_entry_with_row(log, n) for n in names]
        writes.insert(position, _entry_with_row(log, "TEST:taken"))
        _, followers = _batched(writer, _entry(log, b"leader %d" % position), writes, True)
        with pytest.raises(IntegrityError):
            followers[position].result()
        sizes = {
            f.result()[1].signed.checkpoint.size for i, f in enumerate(followers) if i != position
        }
        assert len(sizes) == 1  # the others committed together, in one batch
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(suppliers)).scalar() == 7
    assert log.waiting() == 0 and log.fsck() == []


def test_writes_queued_behind_a_leader_share_one_checkpoint(
    engine: Engine, authority: timestamp.Authority
) -> None:
    log = _log(engine, authority)
    writer = GroupCommit(log)
    led, followers = _batched(
        writer, _entry(log, b"leader"), [_entry(log, b"entry %d" % n) for n in range(FOLLOWERS)]
    )
    seq, integration = led.result()
    assert integration.signed.checkpoint.size == 1 and seq in integration.entries
    results = [future.result() for future in followers]
    sizes = {integration.signed.checkpoint.size for _, integration in results}
    assert sizes == {1 + FOLLOWERS}  # one checkpoint for the whole batch
    for seq, integration in results:
        index, leaf = integration.entries[seq]
        assert log.leaf(index) == leaf
    assert sorted(index for s, i in results for index, _ in [i.entries[s]]) == list(
        range(1, 1 + FOLLOWERS)
    )
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(log_checkpoints)).scalar() == 2
    assert log.fsck() == []


def test_a_failing_write_rolls_back_alone(engine: Engine, authority: timestamp.Authority) -> None:
    log = _log(engine, authority)
    writer = GroupCommit(log)

    def refused(connection: Connection) -> int:
        log.sequence(b"half-written", connection=connection)
        raise ValueError("this request's own error")

    good = [_entry(log, b"good %d" % n) for n in range(3)]
    led, followers = _batched(writer, _entry(log, b"leader"), [good[0], refused, *good[1:]])
    assert led.result()[1].signed.checkpoint.size == 1
    with pytest.raises(ValueError, match="this request's own error"):
        followers[1].result()
    logged = [followers[n].result() for n in (0, 2, 3)]
    assert {i.signed.checkpoint.size for _, i in logged} == {4}
    with engine.connect() as connection:
        leaves = connection.execute(select(log_entries.c.leaf).order_by(log_entries.c.idx))
        assert [bytes(leaf) for (leaf,) in leaves] == [b"leader", b"good 0", b"good 1", b"good 2"]
        assert connection.execute(select(func.count()).select_from(log_pending)).scalar() == 0
    assert log.fsck() == []


def test_when_the_tsa_fails_the_batch_commits_unlogged_and_every_write_hears_it(
    engine: Engine, authority: timestamp.Authority
) -> None:
    log = _log(engine, authority, down=True)
    writer = GroupCommit(log)
    led, followers = _batched(
        writer, _entry(log, b"leader"), [_entry(log, b"entry %d" % n) for n in range(3)]
    )
    for future in [led, *followers]:
        with pytest.raises(TimestampUnavailableError):
            future.result()
    assert log.waiting() == 4  # stored, not lost: the sweep logs them when the TSA answers
    assert log.size() == 0
    recovered = _log(engine, authority)
    signed = recovered.integrate()
    assert signed is not None and signed.checkpoint.size == 4
    assert recovered.fsck() == []


def test_when_the_transaction_cannot_start_every_write_of_the_batch_hears_why(
    engine: Engine, authority: timestamp.Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _log(engine, authority)
    writer = GroupCommit(log)
    release = threading.Event()

    def leader(connection: Connection) -> int:
        release.wait(10)
        return log.sequence(b"leader", connection=connection)

    @contextmanager
    def unavailable(exclusive: bool = False) -> Iterator[Connection]:
        raise OperationalError("BEGIN", {}, Exception("the database is not answering"))
        yield  # pragma: no cover - a generator that raises before it yields

    pool = ThreadPoolExecutor(FOLLOWERS + 1)
    led = pool.submit(writer.run, leader)
    _wait_until(lambda: writer._leading and not writer._queued)
    followers = [pool.submit(writer.run, _entry(log, b"entry %d" % n)) for n in range(FOLLOWERS)]
    _wait_until(lambda: len(writer._queued) == FOLLOWERS)
    monkeypatch.setattr(log, "writing", unavailable)  # the next batch's transaction fails
    release.set()
    pool.shutdown(wait=True)
    assert led.result()[1].signed.checkpoint.size == 1
    for future in followers:
        with pytest.raises(OperationalError, match="not answering"):
            future.result()
    assert log.waiting() == 0 and log.size() == 1  # nothing of the failed batch was stored


def test_writes_that_queue_while_the_leader_waits_for_the_lock_join_its_batch(
    engine: Engine, authority: timestamp.Authority
) -> None:
    log = _log(engine, authority)
    writer = GroupCommit(log)
    held, release = threading.Event(), threading.Event()

    def other_worker() -> None:  # another process's transaction holds the writer lock
        with log.writing(exclusive=True):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=other_worker)
    holder.start()
    assert held.wait(10)
    arrived: list[int] = []

    def submit(number: int) -> tuple[int, Integration]:
        arrived.append(number)
        return writer.run(_entry(log, b"entry %d" % number))

    pool = ThreadPoolExecutor(FOLLOWERS)
    futures = [pool.submit(submit, n) for n in range(FOLLOWERS)]
    _wait_until(lambda: len(arrived) == FOLLOWERS and writer._leading)
    time.sleep(0.2)  # each has queued: a list append after it arrived
    release.set()
    holder.join()
    pool.shutdown(wait=True)
    # One batch: the first arrival led, and took the queue once it held the lock.
    assert {future.result()[1].signed.checkpoint.size for future in futures} == {FOLLOWERS}
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(log_checkpoints)).scalar() == 1


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_batch_takes_savepoints_only_when_a_write_is_refused(
    engine: Engine, authority: timestamp.Authority
) -> None:
    log = _log(engine, authority)
    writer = GroupCommit(log)
    with _statements(engine) as seen:
        _batched(writer, _entry(log, b"leader"), [_entry(log, b"a"), _entry(log, b"b")])
    # Savepoints are two more statements a write inside the writer lock.
    assert not [s for s in seen if "SAVEPOINT" in s.upper()]
    calls: list[int] = []

    def refused(connection: Connection) -> int:
        calls.append(1)
        raise ValueError("refused")

    with _statements(engine) as seen:
        _, followers = _batched(writer, _entry(log, b"leader 2"), [_entry(log, b"c"), refused])
    assert [s for s in seen if "SAVEPOINT" in s.upper()]
    assert len(calls) == 2  # once side by side, once alone in its savepoint
    assert followers[0].result()[1].signed.checkpoint.size == 5
    assert log.fsck() == []


def test_a_batch_that_rolls_back_leaves_nothing_for_later_proofs(
    engine: Engine, authority: timestamp.Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Processes remember committed subtree hashes and entries for proofs; a batch whose
    transaction fails after it computed its subtrees must leave none of them behind. Here
    another worker (a second log over the same database) then fills the same indexes with
    other leaves: every proof the first one serves must lead to that worker's root."""
    first = _log(engine, authority)
    GroupCommit(first).run(_entry(first, b"committed 0"))
    doomed = GroupCommit(first)
    appended: list[Integration] = []
    real_append = first.append

    def append_then_fail(connection: Connection, limit: int = 10_000) -> Integration:
        appended.append(real_append(connection, limit))
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(first, "append", append_then_fail)
    with pytest.raises(OperationalError):
        doomed.run(_entry(first, b"rolled back 1"))
    monkeypatch.undo()
    assert appended and appended[0].signed.checkpoint.size == 2  # it got as far as signing

    other = _log(engine, authority)
    leaves = [b"other %d" % n for n in range(1, 4)]
    results = [GroupCommit(other).run(_entry(other, leaf)) for leaf in leaves]
    signed = results[-1][1].signed
    size = signed.checkpoint.size
    assert size == 4
    indexes = [0, *(integration.entries[seq][0] for seq, integration in results)]
    paths, (consistency,) = first.proofs([(i, size) for i in indexes], [(2, size)])
    expected = [b"committed 0", *leaves]
    for index, path, leaf in zip(indexes, paths, expected, strict=True):
        merkle.verify_inclusion(merkle.leaf_hash(leaf), index, size, path, signed.checkpoint.root)
    old_root = results[0][1].signed.checkpoint.root
    merkle.verify_consistency(2, size, consistency, old_root, signed.checkpoint.root)
    assert first.entries_by_seq([s for s, _ in results]) == {
        seq: integration.entries[seq] for seq, integration in results
    }


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_an_entry_and_the_row_describing_it_are_one_statement(
    engine: Engine, authority: timestamp.Authority
) -> None:
    log = _log(engine, authority)
    row = EntryRow(attestations)
    values = {"supplier": "TEST:s", "key_id": "k", "envelope": "{}"}

    def attestation(number: int) -> Write:
        def write(connection: Connection) -> Callable[[], int]:
            mine = {**values, "feed_sequence": number, "payload_sha256": f"{number}"}
            return log.sequence_later(b"a %d" % number, None, connection, (row, mine))

        return write

    for number in range(6):  # psycopg prepares a statement on its sixth run: done here
        GroupCommit(log).run(attestation(number), True)
    with traced(engine) as wire:
        seq, integration = GroupCommit(log).run(attestation(6), True)
    # BEGIN, the lock, the entry with its row, what waits, the right edge, integration's
    # writes, COMMIT: with the entry and the row apart, eight.
    assert wire.statements == 7
    with engine.connect() as connection:
        described = connection.execute(
            select(attestations.c.feed_sequence).where(attestations.c.seq == seq)
        ).scalar()
    assert described == 6 and integration.entries[seq][1] == b"a 6"


def test_a_row_describing_an_entry_names_every_column_on_every_database(
    engine: Engine, authority: timestamp.Authority
) -> None:
    # PostgreSQL's one statement needs them all; SQLite would fill in NULLs for those left
    # out, so a row that worked there would fail on PostgreSQL.
    log = _log(engine, authority)
    row = EntryRow(attestations)
    partial = {"supplier": "TEST:s", "feed_sequence": 0, "payload_sha256": "d", "key_id": "k"}
    with log.writing() as connection, pytest.raises(RegistryError, match="envelope"):
        log.sequence_later(b"a", None, connection, (row, partial))
    assert log.waiting() == 0


def test_a_row_cannot_describe_an_entry_with_a_column_named_as_the_entrys() -> None:
    from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table

    clashing = Table("t", MetaData(), Column("seq", Integer), Column("leaf", LargeBinary))
    with pytest.raises(RegistryError, match="leaf"):
        EntryRow(clashing)


# A condition as the attestation's: a row of another table (here a supplier) is as it was read.
_SUPPLIER_UNCHANGED = (
    select(suppliers.c.id)
    .where(
        suppliers.c.id == bindparam("named"),
        suppliers.c.verification == bindparam("verification"),
    )
    .exists()
)


def _guarded(log: TransparencyLog, row: EntryRow, number: int, verification: str) -> Write:
    """An attestation's write, stored only while supplier TEST:s is ``verification``."""

    def write(connection: Connection) -> Callable[[], int]:
        values = {"supplier": "TEST:s", "key_id": "k", "envelope": "{}"}
        mine = {**values, "feed_sequence": number, "payload_sha256": f"{number}"}
        condition = {"named": "TEST:s", "verification": verification}
        return log.sequence_later(b"a %d" % number, None, connection, (row, mine), condition)

    return write


def test_a_write_whose_condition_fails_stores_nothing_and_fails_alone(
    engine: Engine, authority: timestamp.Authority
) -> None:
    log = _log(engine, authority)
    with log.writing() as connection:
        row = {"id": "TEST:s", "name": "s", "identity": "{}", "verification": "verified"}
        _NEW_SUPPLIER.run(connection, {**row, "role": "supplier"})
    guarded = EntryRow(attestations, condition=_SUPPLIER_UNCHANGED)
    writer = GroupCommit(log)
    # In a pipelined batch, between writes whose condition holds.
    writes = [_guarded(log, guarded, n, "verified" if n != 1 else "unverified") for n in range(3)]
    _, followers = _batched(writer, _entry(log, b"leader"), writes, True)
    with pytest.raises(UnmetConditionError):
        followers[1].result()
    kept = [followers[n].result() for n in (0, 2)]
    assert {integration.signed.checkpoint.size for _, integration in kept} == {3}
    # Alone in its batch: nothing waits, so the batch integrates nothing.
    with pytest.raises(UnmetConditionError):
        writer.run(_guarded(log, guarded, 7, "unverified"), True)
    # After a refusal, in savepoints.
    writes = [_guarded(log, guarded, 8, "unverified"), _guarded(log, guarded, 0, "verified")]
    writes.append(_guarded(log, guarded, 9, "verified"))
    _, followers = _batched(writer, _entry(log, b"again"), writes, True)
    with pytest.raises(UnmetConditionError):
        followers[0].result()
    with pytest.raises(IntegrityError):  # digest "0" is taken
        followers[1].result()
    assert followers[2].result()[1].signed.checkpoint.size == 5
    with engine.connect() as connection:
        stored = connection.execute(select(attestations.c.feed_sequence)).scalars()
        assert sorted(stored) == [0, 2, 9]
        assert connection.execute(select(func.count()).select_from(log_pending)).scalar() == 0
    assert log.size() == 5 and log.fsck() == []


@pytest.mark.parametrize("pipelinable", [True, False])
def test_a_write_whose_condition_failed_is_not_told_it_was_stored_when_the_tsa_fails(
    engine: Engine, authority: timestamp.Authority, pipelinable: bool
) -> None:
    # When the TSA is down the batch's entries commit unlogged, and their writes hear 503;
    # the write whose condition failed stored nothing, and must hear that, in a pipelined
    # batch (integration before the numbers are read) and in one that is not (after).
    log = _log(engine, authority, down=True)
    with log.writing() as connection:
        row = {"id": "TEST:s", "name": "s", "identity": "{}", "verification": "verified"}
        _NEW_SUPPLIER.run(connection, {**row, "role": "supplier"})
    guarded = EntryRow(attestations, condition=_SUPPLIER_UNCHANGED)
    writes = [_guarded(log, guarded, 0, "unverified"), _guarded(log, guarded, 1, "verified")]
    _, followers = _batched(GroupCommit(log), _entry(log, b"leader"), writes, pipelinable)
    with pytest.raises(UnmetConditionError):
        followers[0].result()
    with pytest.raises(TimestampUnavailableError):
        followers[1].result()
    assert log.waiting() == 2  # the leader's entry and the second write's


def test_a_condition_needs_exactly_its_parameters(
    engine: Engine, authority: timestamp.Authority
) -> None:
    log = _log(engine, authority)
    guarded = EntryRow(attestations, condition=_SUPPLIER_UNCHANGED)
    values = {"supplier": "TEST:s", "feed_sequence": 0, "payload_sha256": "d", "key_id": "k"}
    values["envelope"] = "{}"
    with log.writing() as connection, pytest.raises(RegistryError, match="verification"):
        log.sequence_later(b"a", None, connection, (guarded, values), {"named": "TEST:s"})
    assert log.waiting() == 0
