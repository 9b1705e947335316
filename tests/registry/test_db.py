"""The registry's storage layer: what the tables hold, and stores written by earlier versions."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    Table,
    Text,
    create_engine,
    delete,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.db import (
    INDEX_SCHEMA,
    MMAP_BYTES,
    Deflated,
    attestations,
    endorsements,
    envelope_of,
    index_attestations,
    index_countries,
    index_facts,
    index_file,
    index_latest_filters,
    index_state,
    index_suppliers,
    index_tables,
    inflate,
    insert_many,
    insert_tuples,
    log_entries,
    make_engine,
    metadata,
    stored_envelope,
    writing,
)
from sqm.registry.errors import DamagedStoreError
from sqm.registry.seed import seed
from sqm.trust import bundle, dsse
from sqm.trust.bundle import statement
from tests.conftest import EXAMPLES

ENVELOPE = json.dumps(
    {
        "payloadType": "application/vnd.in-toto+json",
        "payload": "eyJfdHlwZSI6ICJodHRwczovL2luLXRvdG8uaW8vU3RhdGVtZW50L3YxIn0=" * 40,
        "signatures": [{"keyid": "k", "sig": "c2ln"}],
    }
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    else:
        yield request.getfixturevalue("postgres_url")


def _attestation(seq: int, envelope: str | bytes) -> dict[str, object]:
    return {
        "seq": seq,
        "supplier": "lei:5493001KJTIIGC8Y1R12",
        "feed_sequence": seq,
        "payload_sha256": f"{seq:064x}",
        "key_id": "key",
        "envelope": envelope,
    }


def _dispose_all(made: Engine) -> None:
    if made.dialect.name == "postgresql":
        metadata.drop_all(made)
    made.dispose()


def test_envelopes_are_stored_deflated_and_read_back_as_submitted(database_url: str) -> None:
    made = make_engine(database_url)
    try:
        with made.begin() as connection:
            connection.execute(attestations.insert(), _attestation(1, ENVELOPE))
            # Deflated ahead of the write (as ingest does outside the write lock): the same.
            connection.execute(attestations.insert(), _attestation(3, Deflated.of(ENVELOPE)))
            connection.execute(
                endorsements.insert(),
                {
                    "seq": 2,
                    "endorser": "e",
                    "attestation_index": 1,
                    "assurance": "third_party",
                    "envelope": ENVELOPE,
                },
            )
        with made.connect() as connection:
            plain, early = connection.execute(
                text("SELECT envelope FROM attestations ORDER BY seq")
            ).scalars()
            assert isinstance(plain, bytes) and early == plain
            assert zlib.decompress(plain).decode() == ENVELOPE
            assert len(plain) < len(ENVELOPE) / 4
            read = connection.execute(select(attestations.c.envelope)).scalars().all()
            assert read == [ENVELOPE, ENVELOPE]
            assert connection.execute(select(endorsements.c.envelope)).scalar_one() == ENVELOPE
    finally:
        _dispose_all(made)


def test_a_store_with_plain_text_envelopes_reads_them_unchanged(database_url: str) -> None:
    # The attestations table as stores created before deflation have it: envelope as text.
    old = MetaData()
    Table(
        "attestations",
        old,
        *(Column(c.name, c.type, primary_key=c.primary_key) for c in attestations.c
          if c.name != "envelope"),
        Column("envelope", Text, nullable=False),
    )  # fmt: skip
    before = create_engine(database_url)
    old.create_all(before)
    with before.begin() as connection:
        connection.execute(old.tables["attestations"].insert(), _attestation(1, ENVELOPE))
    before.dispose()

    made = make_engine(database_url)
    try:
        with made.begin() as connection:
            connection.execute(attestations.insert(), _attestation(2, ENVELOPE))
        with made.connect() as connection:
            read = connection.execute(
                select(attestations.c.seq, attestations.c.envelope).order_by(attestations.c.seq)
            ).all()
            assert [tuple(row) for row in read] == [(1, ENVELOPE), (2, ENVELOPE)]
            if made.dialect.name == "postgresql":
                kind = connection.execute(
                    text(
                        "SELECT data_type FROM information_schema.columns"
                        " WHERE table_name = 'attestations' AND column_name = 'envelope'"
                    )
                ).scalar()
                assert kind == "bytea"
    finally:
        _dispose_all(made)


def test_a_damaged_envelope_is_reported_not_a_traceback(engine: Engine, tmp_path: Path) -> None:
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    with engine.begin() as connection:
        seq, stored = connection.execute(
            text("SELECT seq, envelope FROM attestations ORDER BY seq LIMIT 1")
        ).one()
        damaged = bytes(stored)[:10] + bytes([bytes(stored)[10] ^ 0xFF]) + bytes(stored)[11:]
        connection.execute(
            text("UPDATE attestations SET envelope = :damaged WHERE seq = :seq"),
            {"damaged": damaged, "seq": seq},
        )
        index = connection.execute(select(log_entries.c.idx).where(log_entries.c.seq == seq))
        index = index.scalar_one()
    client = app.test_client()
    answer = client.get(f"/api/v1/bundles/{index}")
    assert answer.status_code == 500
    assert answer.json is not None and answer.json["error"] == "store_damaged"
    assert "restore it from a backup" in answer.json["message"]
    page = client.get(f"/attestations/{index}")
    assert page.status_code == 500 and b"store_damaged" in page.data
    assert b"Traceback" not in page.data
    problems = app.extensions["sqm"]["indexer"].check()
    assert len(problems) == 1 and problems[0].startswith(f"entry {index}: a stored envelope")


def test_postgresql_plans_searches_in_their_written_order(postgres_url: str) -> None:
    # Searching join orders cost PostgreSQL's planner several times what running a search
    # does; the search's SQL states its order (registry/db.py, make_engine).
    made = make_engine(postgres_url)
    try:
        with made.connect() as connection:
            for setting in ("join_collapse_limit", "from_collapse_limit"):
                assert connection.exec_driver_sql(f"SHOW {setting}").scalar() == "1"
    finally:
        _dispose_all(made)


def test_sqlite_reads_the_log_through_a_memory_map(tmp_path: Path) -> None:
    # A proof reads one subtree hash per level, each in another page: mapped, not read().
    made = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    try:
        with made.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA mmap_size").scalar() == MMAP_BYTES
            assert (
                sqlite3.connect(tmp_path / "plain.sqlite3")
                .execute(f"PRAGMA mmap_size={MMAP_BYTES}")
                .fetchone()[0]
                == MMAP_BYTES
            )  # within SQLite's own cap, so not silently cut
    finally:
        _dispose_all(made)


def test_bulk_inserts_store_what_sqlalchemys_insert_stores(database_url: str) -> None:
    # Equal values that bind differently (one instant at two UTC offsets) stay distinct.
    noon = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    later_clock = noon.astimezone(timezone(timedelta(hours=2)))
    rows = [
        {"supplier": f"s{n}", "name": "n", "country": None, "latest_index": n,
         "latest_issued_at": moment, "attestation_count": 1}
        for n, moment in enumerate([noon, later_clock, noon])
    ]  # fmt: skip
    bulk, plain = _stored_both_ways(
        database_url, index_suppliers, "latest_index", rows,
        lambda connection: insert_many(connection, index_suppliers, rows),
    )  # fmt: skip
    assert bulk == plain and len(bulk) == 3


def _stored_both_ways(
    database_url: str,
    table: Table,
    order: str,
    rows: list[dict[str, Any]],
    bulk_insert: Callable[[Connection], None],
) -> tuple[list[Any], list[Any]]:
    """What ``table`` holds after ``bulk_insert``, and after SQLAlchemy's insert of ``rows``."""
    made = make_engine(database_url)
    query = text(f"SELECT * FROM {table.name} ORDER BY {order}")
    try:
        with made.begin() as connection:
            bulk_insert(connection)
        with made.connect() as connection:
            bulk = list(connection.execute(query).all())
        with made.begin() as connection:
            connection.execute(delete(table))
            connection.execute(table.insert(), rows)
        with made.connect() as connection:
            plain = list(connection.execute(query).all())
    finally:
        _dispose_all(made)
    return bulk, plain


@pytest.mark.parametrize(
    ("value", "as_of"),
    [
        (2.5, datetime(2026, 11, 27, 12, 0, tzinfo=UTC)),  # PostgreSQL: a binary COPY
        (3, datetime(2026, 11, 27, 12, 0, tzinfo=UTC)),  # an int in a float column: as text
        (2.5, datetime(2026, 11, 27, 12, 0)),  # a naive time: as text
    ],
    ids=["binary", "int-for-float", "naive-time"],
)
def test_fact_rows_as_tuples_store_what_sqlalchemys_insert_stores(
    database_url: str, value: float, as_of: datetime
) -> None:
    # The index's rows go in as tuples (insert_tuples), on PostgreSQL by a binary COPY when
    # every value has its column's own Python type, otherwise as text: both store what
    # SQLAlchemy's insert stores.
    rows = [
        (n, "lei:X", "capability_records", f"r{n}", "capability_records.cpk", number, None,
         number, None, "site", None, "c1", None, moment, 2)
        for n, (number, moment) in enumerate([(value, as_of), (1.33, None)])
    ]  # fmt: skip
    keys = index_facts.c.keys()
    bulk, plain = _stored_both_ways(
        database_url, index_facts, "log_index",
        [dict(zip(keys, row, strict=True)) for row in rows],
        lambda connection: insert_tuples(connection, index_facts, rows),
    )  # fmt: skip
    assert bulk == plain and len(bulk) == 2


def test_a_failing_bulk_insert_raises_the_databases_error_as_sqlalchemy_does(
    database_url: str,
) -> None:
    # Callers catch SQLAlchemyError (the indexer's sweep, a write's own indexing): a driver
    # error from the bulk path (PostgreSQL's COPY) must come out the same way, and nothing
    # of the batch stays.
    row = {"log_index": 7, "supplier": "s", "country": "DE"}
    made = make_engine(database_url)
    try:
        with made.begin() as connection:
            insert_many(connection, index_countries, [row])
        with pytest.raises(IntegrityError), made.begin() as connection:
            insert_many(connection, index_attestations, [_indexed(1), _indexed(1)])
        with made.connect() as connection:
            assert (
                connection.execute(select(func.count()).select_from(index_attestations)).scalar()
                == 0
            )
            assert connection.execute(select(index_countries.c.country)).scalars().all() == ["DE"]
    finally:
        _dispose_all(made)


def _indexed(log_index: int) -> dict[str, object]:
    return {
        "log_index": log_index, "supplier": "s", "feed_id": "f", "feed_sequence": 0,
        "issued_at": datetime(2026, 11, 27, tzinfo=UTC), "previous_index": None,
        "payload_sha256": "0" * 64, "assurance_rank": 0,
    }  # fmt: skip


def test_a_store_whose_filter_values_follow_the_database_collation_is_moved_to_byte_order(
    icu_postgres_url: str,
) -> None:
    made = make_engine(icu_postgres_url)
    query = text(
        "SELECT collation_name FROM information_schema.columns WHERE table_name ="
        " 'index_latest_filters' AND column_name = 'value'"
    )
    try:
        with made.begin() as connection:
            assert connection.execute(query).scalar() == "C"
            connection.exec_driver_sql(  # as an earlier version created it
                'ALTER TABLE index_latest_filters ALTER COLUMN value TYPE text COLLATE "default"'
            )
            assert connection.execute(query).scalar() != "C"
        made.dispose()
        made = make_engine(icu_postgres_url)
        with made.connect() as connection:
            assert connection.execute(query).scalar() == "C"
    finally:
        made.dispose()


def test_a_supplier_holds_each_filter_value_once(database_url: str) -> None:
    # Searches join and walk these sets: a value held twice would repeat the supplier's hit.
    # A store made before the index was unique gets the unique one at start.
    made = make_engine(database_url)
    try:
        # SQLite makes an index in the database of its table: the index's own file.
        schema = f"{INDEX_SCHEMA}." if index_file(made) else ""
        with made.begin() as connection:
            connection.exec_driver_sql("DROP INDEX index_latest_filters_once_by_supplier")
            connection.exec_driver_sql(
                f"CREATE INDEX {schema}index_latest_filters_by_supplier "
                "ON index_latest_filters (supplier, kind, value)"
            )
        made.dispose()
        made = make_engine(database_url)  # the registry starting on the older store
        row = {"kind": "country", "value": "DE", "supplier": "LEI:1", "log_index": 1}
        with made.begin() as connection:
            connection.execute(index_latest_filters.insert(), row)
        with pytest.raises(IntegrityError), made.begin() as connection:
            connection.execute(index_latest_filters.insert(), {**row, "log_index": 2})
        with made.connect() as connection:
            assert (
                connection.execute(select(func.count()).select_from(index_latest_filters)).scalar()
                == 1
            )
            names = {
                index["name"]
                for index in inspect(connection).get_indexes(
                    "index_latest_filters", schema=schema.rstrip(".") or None
                )
            }
        assert "index_latest_filters_once_by_supplier" in names
        assert "index_latest_filters_by_supplier" not in names
    finally:
        _dispose_all(made)


# --- an attestation's stored envelope -------------------------------------------------------------


def _signed(payload: bytes, signers: int = 1) -> dsse.Envelope:
    signatures = tuple(dsse.Signature(f"key-{n}", bytes([n]) * 64) for n in range(signers))
    return dsse.Envelope(bundle.PAYLOAD_TYPE, payload, signatures)


@pytest.mark.parametrize(
    "payload",
    [
        json.dumps(
            statement(json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text()))
        ).encode(),
        '{"predicate": {"name": "Müller Ōsaka 製作所", "note": "two\\nlines"}}'.encode(),
        b'{\n  "predicate": {"pretty": "printed"}\n}\n',  # raw line breaks in the payload
        b"",
    ],
)
def test_a_stored_envelope_reads_back_as_submitted(payload: bytes) -> None:
    for signers in (1, 3):
        envelope = _signed(payload, signers)
        stored = stored_envelope(envelope)
        assert envelope_of(inflate(stored)) == envelope
        if len(payload) > 10_000:  # the payload itself, not its base64, is what is deflated
            assert len(stored) < 0.6 * len(
                zlib.compress(json.dumps(envelope.to_json()).encode(), 1)
            )


def test_a_payload_that_is_not_utf8_still_reads_back_byte_for_byte() -> None:
    # The registry refuses such payloads; were one stored, its bytes must survive.
    envelope = _signed(b'{"_type": "\xed\xa0\x80", "predicate": {"ok": "\xff"}}')
    assert envelope_of(inflate(stored_envelope(envelope))) == envelope


def test_envelopes_stored_by_earlier_versions_read_back() -> None:
    envelope = _signed(b'{"predicate": {"a": 1}}', 2)
    earlier = json.dumps(envelope.to_json())  # what earlier versions stored, deflated or not
    assert envelope_of(earlier) == envelope
    assert envelope_of(inflate(Deflated.of(earlier))) == envelope


@pytest.mark.parametrize(
    "stored",
    [
        '{"payloadType": "x"',  # cut
        '{"payloadType":"application/vnd.sqm+json","signatures":[]}\n{}',  # no signature
        '{"payloadType":"application/vnd.sqm+json","signatures":[{"keyid":"k","sig":"!"}]}\n{}',
        '["not", "an", "envelope"]\n{}',
        "",
    ],
)
def test_a_damaged_stored_envelope_is_a_damaged_store(stored: str) -> None:
    with pytest.raises(DamagedStoreError, match="does not read back"):
        envelope_of(stored)


def _finishes_while_held(hold: Callable[[], Any], write: Callable[[], None]) -> bool:
    """Whether ``write`` (in another thread) commits while ``hold``'s transaction is open."""
    done = threading.Event()
    failed: list[BaseException] = []

    def other() -> None:
        try:
            write()
        except BaseException as exc:  # re-raised in the test's thread
            failed.append(exc)
        done.set()

    with hold():
        thread = threading.Thread(target=other)
        thread.start()
        finished = done.wait(5)  # the busy timeout is 30 s: a blocked writer would wait it out
    thread.join()
    if failed:
        raise failed[0]
    return finished


def test_the_log_and_the_index_have_writers_of_their_own(engine: Engine) -> None:
    def log_write(seq: int) -> Callable[[], None]:
        def write() -> None:
            with writing(engine) as connection:
                connection.execute(attestations.insert(), _attestation(seq, ENVELOPE))

        return write

    def index_write(name: str) -> Callable[[], None]:
        def write() -> None:
            with writing(engine, index=True) as connection:
                connection.execute(index_state.insert().values(name=name, last_index=1))

        return write

    @contextmanager
    def index_held() -> Iterator[None]:
        with writing(engine, index=True) as connection:
            connection.execute(index_state.insert().values(name="held", last_index=0))
            yield

    held_seqs = iter(range(100, 110))

    @contextmanager
    def log_held() -> Iterator[None]:
        with writing(engine) as connection:
            connection.execute(attestations.insert(), _attestation(next(held_seqs), ENVELOPE))
            yield

    # A submission does not wait for an index store, nor the indexer for a submission.
    assert _finishes_while_held(index_held, log_write(1))
    assert _finishes_while_held(log_held, index_write("stored"))
    logged = 2
    if engine.dialect.name == "sqlite":  # two writers of the log still take turns there
        assert not _finishes_while_held(log_held, log_write(2))
        logged = 4
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(attestations)).scalar() == logged
        names = connection.execute(select(index_state.c.name).order_by(index_state.c.name))
        assert names.scalars().all() == ["held", "stored"]


def test_a_sqlite_store_keeps_its_index_in_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    made = make_engine(f"sqlite:///{path}")
    try:
        assert index_file(made) == Path(f"{path}.index")
        with writing(made, index=True) as connection:
            connection.execute(index_state.insert().values(name="log", last_index=7))
    finally:
        made.dispose()
    assert _tables(path) == {t.name for t in metadata.sorted_tables} - _index_names()
    assert _tables(Path(f"{path}.index")) == _index_names()
    # Stores in memory, or named by URI, keep everything in one database.
    assert index_file(create_engine("sqlite://")) is None
    assert index_file(create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")) is None


def test_an_index_in_the_log_file_moves_to_its_own_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    earlier = create_engine(f"sqlite:///{path}")  # as an earlier version left it: one file
    metadata.create_all(earlier)
    with earlier.begin() as connection:
        connection.execute(attestations.insert(), _attestation(1, ENVELOPE))
        _write_index(connection, position=41, rows=3)
    earlier.dispose()
    for _ in range(2):  # and a second start finds nothing more to move
        made = make_engine(f"sqlite:///{path}")
        try:
            with made.connect() as connection:
                assert connection.execute(select(index_state.c.last_index)).scalar() == 41
                assert (
                    connection.execute(select(func.count()).select_from(index_countries)).scalar()
                    == 3
                )
                assert (
                    connection.execute(select(func.count()).select_from(attestations)).scalar() == 1
                )
        finally:
            made.dispose()
        assert not _tables(path) & _index_names()
        assert _index_names() <= _tables(Path(f"{path}.index"))


def _write_index(connection: Connection, position: int, rows: int) -> None:
    """An index at ``position``, with ``rows`` rows of one index table."""
    connection.execute(index_state.insert().values(name="log", last_index=position))
    connection.execute(
        index_countries.insert(),
        [{"log_index": n, "supplier": "s", "country": "DE"} for n in range(rows)],
    )


def _index_names() -> set[str]:
    return {table.name for table in index_tables()}


def _tables(path: Path) -> set[str]:
    return _schema_names(path, "table")


def _schema_names(path: Path, kind: str) -> set[str]:
    """The names of the SQLite file's objects of ``kind`` (table, index), SQLite's own left out."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%'", (kind,)
        )
        return {name for (name,) in rows}
    finally:
        connection.close()


def test_writers_that_read_first_wait_for_other_writers_instead_of_failing(
    database_url: str,
) -> None:
    made = make_engine(database_url)
    failures: list[BaseException] = []

    def storing() -> None:  # as the indexer stores: it reads its position, then writes
        for n in range(30):
            try:
                with writing(made, index=True) as connection:
                    connection.execute(select(index_state.c.last_index)).all()
                    time.sleep(0.005)
                    connection.execute(index_state.insert().values(name=f"n{n}", last_index=n))
            except BaseException as exc:  # reported below
                failures.append(exc)

    try:
        indexer = threading.Thread(target=storing)
        indexer.start()
        while indexer.is_alive():  # workers starting meanwhile: each creates the tables
            make_engine(database_url).dispose()
        indexer.join()
        assert failures == []

        # A write outside the writer lock files (the operator's status update is one) holds
        # the log's write lock; a log writer that reads first waits for it, then commits.
        logged = threading.Event()

        def log_write() -> None:
            with writing(made) as connection:
                connection.execute(select(attestations.c.seq)).all()
                connection.execute(attestations.insert(), _attestation(2, ENVELOPE))
            logged.set()

        with made.begin() as connection:
            connection.execute(attestations.insert(), _attestation(1, ENVELOPE))
            writer = threading.Thread(target=log_write)
            writer.start()
            time.sleep(0.3)
        writer.join(10)
        assert logged.is_set()
        with made.connect() as connection:
            assert connection.execute(select(func.count()).select_from(attestations)).scalar() == 2
            names = connection.execute(select(func.count()).select_from(index_state)).scalar()
            assert names == 30
    finally:
        _dispose_all(made)


def test_an_index_in_its_own_file_is_kept_when_an_earlier_version_left_tables_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "registry.sqlite3"
    made = make_engine(f"sqlite:///{path}")
    with writing(made, index=True) as connection:
        _write_index(connection, position=99, rows=5)
    made.dispose()
    earlier = create_engine(f"sqlite:///{path}")  # a rollback, or an old command, run once
    metadata.create_all(earlier)  # its empty index tables, in the log's file
    earlier.dispose()
    made = make_engine(f"sqlite:///{path}")
    try:
        with made.connect() as connection:
            assert connection.execute(select(index_state.c.last_index)).scalar() == 99
            assert (
                connection.execute(select(func.count()).select_from(index_countries)).scalar() == 5
            )
    finally:
        made.dispose()
    assert not _tables(path) & _index_names()


def test_the_index_file_names_its_indexes_as_one_database_does(tmp_path: Path) -> None:
    one = create_engine(f"sqlite:///{tmp_path / 'one.sqlite3'}")  # every table in one file
    metadata.create_all(one)
    one.dispose()
    made = make_engine(f"sqlite:///{tmp_path / 'apart.sqlite3'}")
    made.dispose()
    apart = _indexes(tmp_path / "apart.sqlite3.index")
    assert apart and apart == {name for name in _indexes(tmp_path / "one.sqlite3")
                               if name.startswith(("ix_index_", "index_"))}  # fmt: skip


def _indexes(path: Path) -> set[str]:
    return _schema_names(path, "index")


def test_a_starting_process_does_not_hold_the_log_while_it_waits_for_the_indexer(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    made = make_engine(url)
    starting: list[threading.Thread] = []

    @contextmanager
    def indexer_storing() -> Iterator[None]:  # as a starved indexer holds its lock
        with writing(made, index=True) as connection:
            connection.execute(index_state.insert().values(name="log", last_index=0))
            start = threading.Thread(target=lambda: make_engine(url).dispose())
            start.start()  # a worker starting: it waits for the index's lock
            starting.append(start)
            time.sleep(0.2)
            yield

    def log_write() -> None:
        with writing(made) as connection:
            connection.execute(attestations.insert(), _attestation(1, ENVELOPE))

    try:
        assert _finishes_while_held(indexer_storing, log_write)
        starting[0].join(10)
        assert not starting[0].is_alive()
    finally:
        made.dispose()
