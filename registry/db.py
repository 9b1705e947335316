"""The registry's tables and engine: one SQLAlchemy Core schema for SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import json
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timezone
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from isal import isal_zlib
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, processors
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from sqm.registry.driver import Prepared, raise_as_sqlalchemy
from sqm.registry.errors import DamagedStoreError
from sqm.trust import TrustError, dsse

metadata = MetaData()


class DeflatedText(TypeDecorator[str]):
    """Text stored deflated (zlib, RFC 1950). Envelopes are most of a store's bytes and their
    base64 JSON deflates about 4.5 to 1 at level 1, for ~0.1 ms of a 46 kB envelope: the
    store stays within the page cache longer and each commit writes fewer pages. Values
    stored as plain text (by earlier versions) read back unchanged: JSON text never starts
    with zlib's header byte 0x78."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | Deflated | None, dialect: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, Deflated):
            return bytes(value)
        return _deflated(value.encode())

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else inflate(value)


class Deflated(bytes):
    """Text deflated as a :class:`DeflatedText` column stores it, ahead of the write: the
    registry deflates an envelope before it takes the log's write lock, not while holding it."""

    @classmethod
    def of(cls, value: str | bytes) -> Deflated:
        """``value`` (text, or its UTF-8 bytes) deflated."""
        return cls(_deflated(value.encode() if isinstance(value, str) else value))


def _deflated(data: bytes) -> bytes:
    """``data`` as a zlib stream (RFC 1950), by ISA-L: its level 1 took 27 µs where zlib's
    took 150 for a 29 kB feed, with slightly smaller output; zlib inflates it (and every
    stream stored before)."""
    return bytes(isal_zlib.compress(data, 1))


def stored_envelope(envelope: dsse.Envelope) -> Deflated:
    """An attestation's envelope as its column stores it: :func:`envelope_text`, deflated."""
    return Deflated.of(envelope_text(envelope))


def envelope_text(envelope: dsse.Envelope) -> bytes:
    """An attestation's envelope as its column holds it, before deflation: one line of JSON
    with the envelope's payloadType and signatures, then the payload itself (UTF-8 JSON: the
    registry accepts no other).

    Why not the envelope's JSON: its payload is base64, a third longer than the payload and
    less compressible; deflating the payload itself took half the time (0.12 against 0.24 ms
    for a 20-record feed) and half the bytes (5.7 against 10.7 kB), and every reader then
    skips the base64. :func:`envelope_of` reads both forms. A payload that is not UTF-8
    (the registry refuses those) is held as the envelope's JSON: its bytes survive either way."""
    try:
        envelope.payload.decode("utf-8")
    except UnicodeDecodeError:
        return json.dumps(envelope.to_json()).encode()
    head = json.dumps(
        {
            "payloadType": envelope.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()}
                for s in envelope.signatures
            ],
        },
        separators=(",", ":"),
    )
    return head.encode() + b"\n" + envelope.payload


def envelope_of(stored: str) -> dsse.Envelope:
    """The envelope in an attestation's stored text (:func:`stored_envelope`, or the whole
    envelope as JSON, as earlier versions stored it: JSON text holds no raw line break).
    DamagedStoreError when it is neither."""
    head, newline, payload = stored.partition("\n")
    try:
        if not newline:
            return dsse.Envelope.from_json(json.loads(head))
        envelope = dsse.Envelope.from_json({**json.loads(head), "payload": ""})
        return dataclasses.replace(envelope, payload=payload.encode())
    except (ValueError, TypeError, TrustError) as exc:
        raise DamagedStoreError(
            f"a stored envelope does not read back ({exc}): the database was changed outside"
            " the registry; restore it from a backup (`sqm registry fsck` checks the log)"
        ) from None


def inflate(value: str | bytes) -> str:
    """A :class:`DeflatedText` column's stored value as text; DamagedStoreError when it no
    longer inflates (a changed byte, a cut row)."""
    if isinstance(value, str):
        return value
    data = bytes(value)
    try:
        return (zlib.decompress(data) if data[:1] == b"\x78" else data).decode()
    except (zlib.error, UnicodeDecodeError) as exc:
        raise DamagedStoreError(
            f"a stored envelope does not read back ({exc}): the database was changed outside"
            " the registry; restore it from a backup (`sqm registry fsck` checks the log)"
        ) from None


# Entries are sequenced durably here first; integration moves them into the tree in batches.
# It holds only entries not integrated yet: integration moves them into log_entries. Sequence
# numbers are never reused (SQLite AUTOINCREMENT), though they may commit out of order.
log_pending = Table(
    "log_pending",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("leaf", LargeBinary, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    # For an entry that names its chain's previous entry: the leaf is a JSON template that
    # integration completes with "previousIndex", once indexes are known.
    Column("chain", Text, nullable=True),
    sqlite_autoincrement=True,
)


class last_sequenced(FunctionElement[int]):  # noqa: N801 (named as SQL functions are)
    """The ``log_pending.seq`` of the entry this connection stored last, in SQL: a row stored
    after it in the same transaction names it without waiting for the answer that carries
    the number (so on PostgreSQL both go to the server in one pipeline). PostgreSQL: that
    column's sequence's ``currval`` (this session's); SQLite: ``last_insert_rowid()`` (the
    column is the table's rowid)."""

    type = BigInteger()
    name = "last_sequenced"
    inherit_cache = True


@compiles(last_sequenced, "postgresql")
def _last_sequenced_postgresql(element: last_sequenced, compiler: Any, **kw: Any) -> str:
    return "currval(pg_get_serial_sequence('log_pending', 'seq'))"


@compiles(last_sequenced, "sqlite")
def _last_sequenced_sqlite(element: last_sequenced, compiler: Any, **kw: Any) -> str:
    return "last_insert_rowid()"


log_chain_heads = Table(
    "log_chain_heads",
    metadata,
    Column("chain", Text, primary_key=True),
    Column("last_index", BigInteger, nullable=False),
)
log_entries = Table(
    "log_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
)
# The hash of every complete, aligned block of 2^level leaves: proofs never rehash the log.
# One integer key per node, (level << 56) | index, so that a proof's nodes are fetched with a
# primary-key IN list (SQLite plans a row-value IN over a composite key as a full scan).
log_nodes = Table(
    "log_nodes",
    metadata,
    Column("node", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)
NODE_LEVEL_SHIFT = 56


def node_key(level: int, index: int) -> int:
    """The ``log_nodes`` key of the perfect subtree at ``level`` and ``index``."""
    return (level << NODE_LEVEL_SHIFT) | index


def node_of(key: int) -> tuple[int, int]:
    """``(level, index)`` of a ``log_nodes`` key."""
    return key >> NODE_LEVEL_SHIFT, key & ((1 << NODE_LEVEL_SHIFT) - 1)


log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("note", Text, nullable=False),
    Column("timestamp", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Tokens of further TSAs over the same checkpoint text (``position`` orders them as configured).
log_checkpoint_stamps = Table(
    "log_checkpoint_stamps",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("timestamp", LargeBinary, nullable=False),
)

# The stretches of the log whose checkpoints a further TSA (``SQM_REGISTRY_TSA_MODE=also``)
# must each stamp: from tree size first_size to last_size (NULL while in use), by the SHA-256
# of its CA certificate, whose PEM stays to check its tokens once it is retired. Tree sizes,
# not times: the log key signs a checkpoint's size, which cannot be moved back, where a time
# would come from the log's own TSA. The trust root lists them (``requiredFromTreeSize``).
log_tsa_periods = Table(
    "log_tsa_periods",
    metadata,
    Column("ca_sha256", Text, primary_key=True),
    Column("first_size", BigInteger, primary_key=True, autoincrement=False),
    Column("last_size", BigInteger, nullable=True),
    Column("ca_pem", Text, nullable=False),
)

suppliers = Table(
    "suppliers",
    metadata,
    Column("id", Text, primary_key=True),  # scheme:code of the first registered identifier
    Column("name", Text, nullable=False),
    Column("identity", Text, nullable=False),  # the organisation as registered (JSON)
    Column("verification", Text, nullable=False, default="unverified"),
    Column("role", Text, nullable=False, default="supplier"),  # supplier or endorser
)
supplier_keys = Table(
    "supplier_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("supplier", Text, nullable=False, index=True),
    Column("public_key", LargeBinary, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("seq", BigInteger, nullable=False, unique=True),  # its registration entry
    Column("revocation_seq", BigInteger, nullable=True),  # its revocation entry, if any
)
attestations = Table(
    "attestations",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("supplier", Text, nullable=False),
    Column("feed_sequence", BigInteger, nullable=False),
    Column("payload_sha256", Text, nullable=False, unique=True),
    Column("key_id", Text, nullable=False),
    Column("envelope", DeflatedText, nullable=False),
    UniqueConstraint("supplier", "feed_sequence", name="one_attestation_per_feed_sequence"),
)
endorsements = Table(
    "endorsements",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("endorser", Text, nullable=False),
    Column("attestation_index", BigInteger, nullable=False, index=True),
    Column("assurance", Text, nullable=False),
    Column("envelope", DeflatedText, nullable=False),
)

# --- the search index: derived from the log (and the envelopes its leaves bind), rebuildable
# from it at any time by `sqm registry reindex`; the log, not the index, is authoritative.

index_state = Table(
    "index_state",
    metadata,
    Column("name", Text, primary_key=True),
    Column("last_index", BigInteger, nullable=False),  # the last log entry applied
)
index_suppliers = Table(
    "index_suppliers",
    metadata,
    Column("supplier", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("country", Text),
    Column("latest_index", BigInteger, nullable=False, index=True),
    Column("latest_issued_at", DateTime(timezone=True), nullable=False),
    Column("attestation_count", Integer, nullable=False),
)
index_attestations = Table(
    "index_attestations",
    metadata,
    Column("log_index", BigInteger, primary_key=True, autoincrement=False),
    Column("supplier", Text, nullable=False, index=True),
    Column("feed_id", Text, nullable=False),
    Column("feed_sequence", BigInteger, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("previous_index", BigInteger),
    Column("payload_sha256", Text, nullable=False),
    # The strongest endorsement logged for it by a verified endorser (0 self-declared ... 4
    # accredited third party): see index_endorsements.
    Column("assurance_rank", Integer, nullable=False),
)
# The endorsements and the identities' verification statuses, as the log states them: an
# attestation's assurance_rank is the strongest level vouched for by an endorser whose
# identity the operator verified. Anyone may register as an endorser; only the operator's
# check of who it is makes its word raise what buyers filter on.
index_endorsements = Table(
    "index_endorsements",
    metadata,
    Column("log_index", BigInteger, primary_key=True, autoincrement=False),
    Column("attestation_index", BigInteger, nullable=False, index=True),
    Column("endorser", Text, nullable=False, index=True),
    Column("assurance_rank", Integer, nullable=False),
)
index_verifications = Table(
    "index_verifications",
    metadata,
    Column("supplier", Text, primary_key=True),
    Column("verification", Text, nullable=False),
    Column("log_index", BigInteger, nullable=False),  # the entry that set it
)
index_facts = Table(
    "index_facts",
    metadata,
    Column("log_index", BigInteger, nullable=False),
    Column("supplier", Text, nullable=False),
    Column("section", Text, nullable=False),
    Column("record_id", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("value", Float, nullable=False),
    Column("unit", Text),
    Column("base_value", Float, nullable=False),
    Column("base_unit", Text),
    Column("site", Text),
    Column("product", Text),
    Column("characteristic", Text),
    Column("characteristic_class", Text),
    Column("as_of", DateTime(timezone=True)),
    Column("claimed_rank", Integer, nullable=False),
    # Searches test each candidate attestation's own values of a metric; a supplier's trend
    # reads its attestations' values. Each index more costs every indexed fact.
    Index("index_facts_by_entry", "log_index", "metric", "base_value"),
)
# Indexes of earlier versions that nothing reads any more, dropped at start.
OBSOLETE_INDEXES = (
    "index_facts_by_metric",
    "index_facts_by_supplier",
    "ix_index_facts_log_index",
    "index_classifications_by_code",
    "ix_index_classifications_log_index",
    "ix_index_latest_filters_supplier",
    "index_latest_filters_by_value",
    "index_latest_filters_by_supplier",
)
index_certifications = Table(
    "index_certifications",
    metadata,
    Column("log_index", BigInteger, nullable=False, index=True),
    Column("supplier", Text, nullable=False),
    Column("record_id", Text, nullable=False),
    Column("scheme", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("valid_from", Date),
    Column("valid_until", Date),
    Column("certificate_number", Text),
    Column("site", Text),
    Index("index_certifications_by_scheme", "scheme", "log_index"),
)
index_classifications = Table(
    "index_classifications",
    metadata,
    Column("log_index", BigInteger, nullable=False),
    Column("supplier", Text, nullable=False),
    Column("product", Text, nullable=False),
    Column("scheme", Text, nullable=False),
    Column("code", Text, nullable=False),
    # Only by entry: given an index by code, SQLite tested a candidate by scanning every
    # entry of that code (18 s for one search at 100,000 suppliers).
    Index("index_classifications_by_entry", "log_index", "scheme", "code"),
)
index_countries = Table(
    "index_countries",
    metadata,
    Column("log_index", BigInteger, nullable=False, index=True),
    Column("supplier", Text, nullable=False),
    Column("country", Text, nullable=False),
    Index("index_countries_by_country", "country", "log_index"),
)

# What each supplier's latest attestation may be filtered by, one row a value (kind "country",
# "classification" as SCHEME:CODE, "certification" as the scheme): a search with such a filter
# starts from the suppliers it names, in supplier order, instead of walking every supplier.
index_latest_filters = Table(
    "index_latest_filters",
    metadata,
    Column("kind", Text, nullable=False),
    # A product-class prefix is a range of these values: in byte order, whatever collation
    # the PostgreSQL database has (under ICU en-US the range of "UNSPSC:A116" also held
    # "UNSPSC:a1161500"; where punctuation is ignored, a prefix ending in "." could lose codes).
    Column(
        "value", Text().with_variant(postgresql.TEXT(collation="C"), "postgresql"), nullable=False
    ),
    Column("supplier", Text, nullable=False),
    Column("log_index", BigInteger, nullable=False),
    # With the entry: a search walks a value's suppliers and names their latest attestation
    # from the index alone (PostgreSQL read each walked row from the table: a critical search
    # at 100,000 suppliers, p50 17.9 -> 14.0 ms).
    Index("index_latest_filters_by_value_entry", "kind", "value", "supplier", "log_index"),
    # A supplier's rows, for the indexer's replacing them and for a search that tests whether
    # a walked supplier has a value in a range (a product-class prefix): one seek of this
    # covering index, where the attestation's own classification rows lie all over the table
    # (at 100,000 suppliers, 1,862 such tests 7.6 -> 1 ms). Unique: a search joins these sets
    # and walks them, so a value held twice would repeat a supplier's hit.
    Index("index_latest_filters_once_by_supplier", "supplier", "kind", "value", unique=True),
)

WRITE_LOCK = 727_3161  # PostgreSQL advisory lock key of the log's single writer
SCHEMA_LOCK = 727_3162  # ... and of whoever creates the tables
INDEX_LOCK = 727_3163  # ... and of the index's single writer


def utc(value: datetime) -> datetime:
    """A time as the tables store it: in UTC. SQLite keeps no offset, so times written with
    one would read back shifted; PostgreSQL would convert them anyway."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


INDEX_SCHEMA = "sqm_index"  # the name a SQLite store's index file is attached under
INDEX_PREFIX = "index_"  # the search index's tables are named so
# A table of each file, which a write transaction names first to take that file's write lock.
_LOCK_TABLES = {"main": "log_checkpoints", INDEX_SCHEMA: "index_state"}


def index_file(engine: Engine) -> Path | None:
    """The file that holds the search index of a SQLite store on disk, beside the log's file;
    None where the index shares the log's database (PostgreSQL, an in-memory or URI store).

    Why a file of its own: SQLite has one writer at a time per database file. In the log's
    file, every index store held the lock the submissions wait for (6.1 s of a 13 s ingest
    run), so the indexer could not be given only spare CPU: a low-priority holder of that lock
    would stall every submission behind it. Apart, the index is written under its own lock,
    at any priority, and losing the file loses nothing: the indexer rebuilds it from the log.
    """
    lock = _writer_lock_path(engine)
    return None if lock is None else Path(f"{engine.url.database}.index")


def index_tables() -> list[Table]:
    """The search index's tables: derived from the log, rebuildable from it."""
    return [table for table in metadata.sorted_tables if table.name.startswith(INDEX_PREFIX)]


MMAP_BYTES = 2**31 - 2**16  # SQLITE_MAX_MMAP_SIZE's default: a larger value is cut to it


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://...``, tables created.

    A SQLite store on disk keeps its search index in a file of its own (:func:`index_file`),
    attached to every connection, so statements name the index tables as they would in one
    database; an index left in the log's file by an earlier version is moved there."""
    engine = create_engine(url)
    index_path = index_file(engine)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(connection: Any, _record: Any) -> None:
            connection.isolation_level = None  # SQLAlchemy issues BEGIN itself, below
            cursor = connection.cursor()
            # WAL lets readers proceed during a write; FULL sync makes an acknowledged row durable.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            # The log's pages read through a memory map rather than a read() each: a proof
            # looks up one subtree hash per level, each in another page of a table of
            # millions. At 1,000,000 entries that read of 20 hashes took 0.40 ms at the
            # median and 0.75-1.07 ms at p99 with read(), 0.25 and 0.49-0.54 ms mapped
            # (one process, 3,000 random proofs). SQLite's own cap, 2 GiB, bounds it.
            cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            if index_path is not None:
                cursor.execute(f"ATTACH DATABASE ? AS {INDEX_SCHEMA}", (str(index_path),))
                cursor.execute(f"PRAGMA {INDEX_SCHEMA}.journal_mode=WAL")
                # A commit of the index lost to a power cut is applied again from the log:
                # its position is stored in the same file, in the same transaction.
                cursor.execute(f"PRAGMA {INDEX_SCHEMA}.synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            writing = connection.get_execution_options().get("sqm_write", False)
            if not writing:
                connection.exec_driver_sql("BEGIN")
            elif index_path is None or writing == "schema":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                # BEGIN IMMEDIATE takes the write lock of every attached database: a log
                # writer would hold the index's, and the indexer the log's. So a deferred
                # BEGIN, and at once a write that changes nothing, to the one file this
                # transaction writes: it takes that file's write lock before anything reads
                # it. A transaction that read first would fail at once (SQLITE_BUSY, the busy
                # handler not consulted) on finding another writer when it came to write.
                schema = INDEX_SCHEMA if writing == "index" else "main"
                connection.exec_driver_sql("BEGIN")
                connection.exec_driver_sql(f"DELETE FROM {schema}.{_LOCK_TABLES[schema]} WHERE 0")

    if engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _plan_as_written(connection: Any, _record: Any) -> None:
            # A search's SQL is written in the order it should run: its starting set, then
            # one index probe per filter. Searching join orders over its dozen relations and
            # pulled-up EXISTS cost PostgreSQL's planner 19 ms where running the plan took
            # 2.6 (5,000 suppliers); the registry's other statements join two or three tables.
            # JIT compilation and parallel workers pay for themselves on long analytic scans.
            # A search stops with its page, but walked plans have large estimated costs: at
            # 100,000 suppliers JIT spent 630 ms compiling a search that then ran in 21 ms,
            # and starting workers for a 7,000-row range cost more than reading it (and takes
            # the cores that concurrent requests need).
            with connection.cursor() as cursor:
                cursor.execute("SET join_collapse_limit = 1")
                cursor.execute("SET from_collapse_limit = 1")
                cursor.execute("SET jit = off")
                cursor.execute("SET max_parallel_workers_per_gather = 0")
            connection.commit()

    # Several gunicorn workers start at once: the tables are created by one writer at a time,
    # holding the index's write lock too (an indexer may be storing from another process).
    with writing(engine, schema=True) as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        tables = metadata.sorted_tables
        if index_path is not None:
            # Indexes named as in the log's file and on PostgreSQL (the default convention's
            # column label would include the schema), so OBSOLETE_INDEXES holds for all.
            apart = MetaData(
                schema=INDEX_SCHEMA, naming_convention={"ix": "ix_%(table_name)s_%(column_0_name)s"}
            )
            moved = [table.to_metadata(apart) for table in index_tables()]
            apart.create_all(connection)
            _move_index_apart(connection, moved)
            tables = [*(t for t in tables if not t.name.startswith(INDEX_PREFIX)), *moved]
        metadata.create_all(connection, tables=[t for t in tables if t.metadata is metadata])
        # Indexes added since a database was created (create_all skips existing tables).
        for table in tables:
            for index in table.indexes:
                index.create(connection, checkfirst=True)
        for name in OBSOLETE_INDEXES:
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        _deflate_envelope_columns(connection)
        _byte_order_filter_values(connection)
    return engine


def _move_index_apart(connection: Connection, tables: list[Table]) -> None:
    """A store of an earlier version holds its search index in the log's file: its rows are
    copied into the index's own file (in one transaction with the tables' creation), and the
    old tables dropped. Copying keeps a large index searchable at once, where re-deriving it
    from the log would take minutes per 100,000 attestations. Where the index's file already
    holds an index (a position), it is kept and the log file's tables are only dropped: an
    earlier version run since (a rollback, an old command) may have left empty ones there."""
    held = {
        name
        for (name,) in connection.exec_driver_sql(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?",
            (len(INDEX_PREFIX), INDEX_PREFIX),
        )
    }
    if not held:
        return
    kept = connection.exec_driver_sql(
        f"SELECT 1 FROM {INDEX_SCHEMA}.index_state WHERE name = 'log'"
    ).first()
    for table in tables:
        if table.name not in held:
            continue
        if kept is None:
            columns = ", ".join(f'"{column.name}"' for column in table.columns)
            connection.exec_driver_sql(f'DELETE FROM {INDEX_SCHEMA}."{table.name}"')
            connection.exec_driver_sql(
                f'INSERT INTO {INDEX_SCHEMA}."{table.name}" ({columns})'
                f' SELECT {columns} FROM main."{table.name}"'
            )
        connection.exec_driver_sql(f'DROP TABLE main."{table.name}"')


def _byte_order_filter_values(connection: Connection) -> None:
    """Stores created before the filter values were compared in byte order: their column
    takes the "C" collation (PostgreSQL rebuilds its indexes)."""
    if connection.dialect.name != "postgresql":
        return
    collation = connection.execute(
        text(
            "SELECT collation_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = 'index_latest_filters' AND column_name = 'value'"
        )
    ).scalar()
    if collation != "C":
        connection.exec_driver_sql(
            'ALTER TABLE index_latest_filters ALTER COLUMN value TYPE text COLLATE "C"'
        )


def _deflate_envelope_columns(connection: Connection) -> None:
    """Stores created before envelopes were deflated hold them in text columns. SQLite keeps a
    blob in a text column as it is, so old and new rows mix there; PostgreSQL needs bytea,
    which the old text converts to losslessly (and reads back as it was)."""
    if connection.dialect.name != "postgresql":
        return
    for table in ("attestations", "endorsements"):
        kind = connection.execute(
            text(
                "SELECT data_type FROM information_schema.columns WHERE table_schema ="
                " current_schema() AND table_name = :table AND column_name = 'envelope'"
            ),
            {"table": table},
        ).scalar()
        if kind == "text":
            connection.exec_driver_sql(
                f"ALTER TABLE {table} ALTER COLUMN envelope TYPE bytea"
                " USING convert_to(envelope, 'UTF8')"
            )


@contextmanager
def writing(engine: Engine, index: bool = False, schema: bool = False) -> Iterator[Connection]:
    """A write transaction on ``engine``, committed on a clean exit.

    On SQLite, first an exclusive lock on a file beside the database, held until after the
    commit: the log's (``index`` False) or the index's (``index`` True; it writes nothing of
    the log and takes no lock of the log's). Why: SQLite's own busy handler polls, sleeping up
    to 100 ms between tries, so writers from several gunicorn workers queued in sleeps (a p99
    of 700 ms at 60 attestations/s), and a writer that keeps the lock busy, as the indexer
    catching up does, starves the others; a blocked flock() wakes as soon as the holder lets
    go. Then the transaction takes its file's write lock before it reads (see
    :func:`make_engine`).

    ``schema``: both lock files, the index's first, and the write locks of every file up front
    (BEGIN IMMEDIATE), for creating and moving tables while another process may be indexing.
    """
    # With ``schema``, the index's lock first: waiting for an indexer that stores at the
    # lowest priority, a start would otherwise hold the log's lock, and every submission.
    names = ["index-writer", "writer"] if schema else ["index-writer" if index else "writer"]
    with contextlib.ExitStack() as stack:
        for name in names:
            if (lock := _writer_lock_path(engine, name)) is None:
                continue
            # Opened per transaction: flock() excludes other open files, not other threads
            # sharing one, and the integrator sweep writes from a thread of its own.
            handle = stack.enter_context(lock.open("a+b"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        with (
            engine.connect().execution_options(
                sqm_write="schema" if schema else "index" if index else True
            ) as connection,
            connection.begin(),
        ):
            yield connection


def _writer_lock_path(engine: Engine, name: str = "writer") -> Path | None:
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(f"{database}.{name}-lock")


@contextmanager
def exclusive(engine: Engine, name: str, key: int, wait: bool = True) -> Iterator[bool]:
    """Hold the lock ``name`` (PostgreSQL: session advisory lock ``key``) across processes for
    the block, whatever transactions run in it; yields False when ``wait`` is False and another
    process holds it. For work that one process at a time should do, such as indexing."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            if wait:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            elif not connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
            ).scalar():
                yield False
                return
            connection.commit()
            try:
                yield True
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        return
    path = _writer_lock_path(engine, name)
    if path is None:
        yield True
        return
    with path.open("a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


# Through the driver (see driver.py): every batch of writes takes this lock, and SQLAlchemy's
# execute spent 40-50 µs of Python on it.
_WRITE_LOCK = Prepared(select(func.pg_advisory_xact_lock(bindparam("key"))))


def write_lock(connection: Connection) -> None:
    """Make this transaction the log's only writer (SQLite: BEGIN IMMEDIATE already did)."""
    if connection.dialect.name == "postgresql":
        if not connection.in_transaction():
            connection.begin()  # the lock lasts as long as the transaction
        _WRITE_LOCK.run(connection, {"key": WRITE_LOCK})


class _Insert(NamedTuple):
    """A table's insert, compiled for one dialect, and how to bind a row's values to it."""

    sql: str
    columns: list[Column[Any]]  # in the statement's parameter order
    take: Callable[[dict[str, Any]], Any]  # a row's values in that order (a tuple)
    # A tuple of the table's column values (``table.c`` order) in that order; None when the
    # two orders agree, as they do for a whole-table insert.
    order: Callable[[tuple[Any, ...]], Any] | None
    processed: list[tuple[int, Any]]  # (position, bind processor) of the columns that have one


_INSERTS: dict[tuple[str, str], _Insert] = {}


def _insert_for(dialect: Any, table: Table) -> _Insert:
    cached = _INSERTS.get((dialect.name, table.name))
    if cached is None:
        compiled = table.insert().compile(dialect=dialect)
        names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.params)
        keys = [table.c[name].key for name in names]
        processors = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        ]
        take = itemgetter(*keys) if len(keys) > 1 else (lambda row: (row[keys[0]],))
        positions = [table.c.keys().index(key) for key in keys]
        order: Callable[[tuple[Any, ...]], Any] | None = None
        if positions != list(range(len(table.c))):
            order = (
                itemgetter(*positions) if len(positions) > 1 else (lambda row: (row[positions[0]],))
            )
        processed = [(i, p) for i, p in enumerate(processors) if p is not None]
        cached = _INSERTS[(dialect.name, table.name)] = _Insert(
            str(compiled), [table.c[name] for name in names], take, order, processed
        )
    return cached


def insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with every column of ``table``) in one driver executemany (on
    PostgreSQL one COPY).

    Why not ``connection.execute(table.insert(), rows)``: SQLAlchemy builds each row's
    parameters in Python, which cost more than the database's own work for the index's
    hundreds of rows an attestation. Here the statement is compiled once per dialect, a row's
    values are taken in C (``itemgetter``), and only the columns whose type has a bind
    processor go through it, as SQLAlchemy would apply it, once per distinct value.
    """
    if not rows:
        return
    insert = _insert_for(connection.dialect, table)
    _execute(connection, table, insert, [insert.take(row) for row in rows])


def insert_tuples(connection: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """:func:`insert_many` for rows given as tuples of every column's value, in ``table``'s
    column order (``table.c``). Why: the index's hundreds of rows an attestation are built as
    such tuples, where a dict per row cost more to build and take apart than to store."""
    if not rows:
        return
    insert = _insert_for(connection.dialect, table)
    order = insert.order
    _execute(connection, table, insert, rows if order is None else [order(row) for row in rows])


def _execute(connection: Connection, table: Table, insert: _Insert, rows: list[Any]) -> None:
    """``rows`` (tuples in ``insert``'s parameter order) into ``table``, bound as SQLAlchemy
    binds them."""
    dialect = connection.dialect
    if insert.processed:
        rows = _bound(rows, insert.processed)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        _copy(connection, table, insert, rows)
        return
    if not dialect.positional:
        keys = [column.key for column in insert.columns]
        rows = [dict(zip(keys, values, strict=True)) for values in rows]
    connection.exec_driver_sql(insert.sql, rows)


def _bound(rows: list[Any], processed: list[tuple[int, Any]]) -> list[Any]:
    """``rows`` with the values of each processed column as its bind processor makes them.

    Column by column, with each distinct value processed once and looked up in C: a batch's
    rows share a few instants, and going through the processed columns row by row in Python
    cost the indexer more than SQLite's own work for the rows."""
    columns: list[Any] = list(zip(*rows, strict=True))
    changed = False
    for position, process in processed:
        values = columns[position]
        # SQLite's Float binds by float(), which gives a float back unchanged: the index's
        # values are floats, and their columns are left as they are.
        if process is processors.to_float and set(map(type, values)) <= _FLOAT_OR_NONE:
            continue
        columns[position] = _processed(values, process)
        changed = True
    return list(zip(*columns, strict=True)) if changed else rows


_FLOAT_OR_NONE = frozenset({float, type(None)})


def _processed(values: tuple[Any, ...], process: Callable[[Any], Any]) -> list[Any]:
    """``values`` bound by ``process``, None as it is; each distinct value processed once.

    Values that compare equal may bind differently: 1 and 1.0, or one instant at two UTC
    offsets (SQLAlchemy binds each value by itself). When a column mixes types or time zones,
    each value is keyed by its type and zone as well."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    mixed = len(kinds) > 1
    if not mixed and kinds and hasattr(next(iter(kinds)), "tzinfo"):
        # Naive and aware times never compare equal: only the aware ones' zones matter.
        zones = set(map(getattr, values, repeat("tzinfo"), repeat(None)))
        zones.discard(None)
        mixed = len(zones) > 1
    if mixed:
        bound: dict[tuple[type, Any, Any], Any] = {}
        out: list[Any] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            key = (type(value), getattr(value, "tzinfo", None), value)
            if key not in bound:
                bound[key] = process(value)
            out.append(bound[key])
        return out
    # One type (and zone): a set keeps each value's first occurrence, as the keyed loop would.
    distinct = set(values)
    distinct.discard(None)
    binding = dict(zip(distinct, map(process, distinct), strict=True))
    binding[None] = None
    return list(map(binding.__getitem__, values))


def _copy(connection: Connection, table: Table, insert: _Insert, rows: list[Any]) -> None:
    """``rows`` into ``table`` by COPY, in ``connection``'s transaction (begun if none is).

    Why COPY rather than an executemany of INSERTs: PostgreSQL's fastest way in, for both
    sides; the index's ~200 rows an attestation cost the indexer and its server process about
    6 ms as INSERTs. psycopg adapts each value by its Python type alone, not by the column's
    (as it can for query parameters): the index passes exactly the columns' types. In binary
    format when every value is of the one Python type whose binary form its column takes (see
    :func:`_binary_copy`), as the index's are; otherwise as text. Driver errors come out as
    SQLAlchemy's, as from any statement, so callers catch them alike."""
    dialect = connection.dialect
    if not connection.in_transaction():
        connection.begin()
    quote = dialect.identifier_preparer
    names = ", ".join(quote.quote(column.name) for column in insert.columns)
    statement = f"COPY {quote.format_table(table)} ({names}) FROM STDIN"
    types = _binary_copy(dialect, table, insert, rows)
    if types is not None:
        statement += " (FORMAT BINARY)"
    driver: Any = connection.connection.driver_connection  # a psycopg.Connection
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            if types is not None:
                copy.set_types(types)
            for values in rows:
                copy.write_row(values)
    except dialect.loaded_dbapi.Error as exc:
        raise_as_sqlalchemy(connection, exc, statement, None)


def _binary_copy(dialect: Any, table: Table, insert: _Insert, rows: list[Any]) -> list[str] | None:
    """The PostgreSQL types of ``insert``'s columns, for a COPY of ``rows`` in binary format;
    None when it goes as text: a column of a type not below, or a value not of the Python type
    whose binary form stores what its text form would.

    Why binary: psycopg formats a float or a timestamp as text at several times the cost of
    packing it (the index's rows of an attestation: 0.41 against 0.10 ms of the indexer's CPU),
    and the server parses none of it. Why the check: a binary dumper takes only its own type
    (a number for a text column is an error there, where as text it was stored as its digits)."""
    key = (dialect.name, table.name)
    if key not in _BINARY_TYPES:
        found = [_binary_type(dialect, column) for column in insert.columns]
        _BINARY_TYPES[key] = None if None in found else [t for t in found if t is not None]
    types = _BINARY_TYPES[key]
    if types is None:
        return None
    columns = zip(*rows, strict=True)
    if all(_BINARY_FITS[kind](values) for kind, values in zip(types, columns, strict=True)):
        return types
    return None


_BINARY_TYPES: dict[tuple[str, str], list[str] | None] = {}


def _binary_type(dialect: Any, column: Column[Any]) -> str | None:
    """A column's PostgreSQL type for a binary COPY, from the type its table was created with;
    None for one the registry does not copy that way."""
    declared = column.type.compile(dialect=dialect).split(" COLLATE ")[0]
    return _BINARY_NAMES.get(declared)


_BINARY_NAMES = {
    "BIGINT": "int8",
    "INTEGER": "int4",
    "FLOAT": "float8",  # without a precision: double precision
    "TEXT": "text",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "DATE": "date",
}


_NONE = type(None)


def _only(kind: type) -> Callable[[tuple[Any, ...]], bool]:
    allowed = frozenset({kind, _NONE})
    return lambda values: set(map(type, values)) <= allowed


def _integers(bits: int) -> Callable[[tuple[Any, ...]], bool]:
    # In range too: out of it the text form fails on the server, as a database error, where
    # packing it fails in psycopg.
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)

    def fits(values: tuple[Any, ...]) -> bool:
        kinds = set(map(type, values))
        if not kinds <= {int, _NONE}:
            return False
        numbers = [value for value in values if value is not None] if _NONE in kinds else values
        return not numbers or (min(numbers) >= low and max(numbers) < high)

    return fits


def _timestamptz(values: tuple[Any, ...]) -> bool:
    # Aware datetimes only (psycopg's binary dumper refuses naive ones; as text PostgreSQL
    # reads those in the session's time zone), in fixed-offset zones.
    if not set(map(type, values)) <= {datetime, _NONE}:
        return False
    zones = list(map(getattr, values, repeat("tzinfo"), repeat(None)))
    return zones.count(None) == values.count(None) and all(
        type(zone) is timezone for zone in set(zones) if zone is not None
    )


_BINARY_FITS: dict[str, Callable[[tuple[Any, ...]], bool]] = {
    "int8": _integers(64),
    "int4": _integers(32),
    "float8": _only(float),
    "text": _only(str),
    "timestamptz": _timestamptz,
    "date": _only(date),
}
