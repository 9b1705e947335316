"""Buyer searches, supplier pages, bundles and SPARQL under concurrent load, at registry scale.

    python benchmarks/registry_search.py [--suppliers 100000] [--attestations 1000000]
        [--data DIR [--reuse | --seed-only]] [--backends sqlite[,postgresql]] [--clients 1,4]
        [--requests 300] [--searches N] [--workers 2] [--also-without-searches] [--explain]

    smoke run (under a minute): --suppliers 200 --attestations 2000 --requests 60
    full size, seeded once (~30 min) then measured: --data DIR --seed-only, then --data DIR
    --reuse --clients 1,4 --searches 60 --also-without-searches

Seeding (bypasses HTTP, real entries; ``benchmarks/search_data.py`` has the distributions):
``--suppliers`` suppliers, each with its own Ed25519 key and a valid LEI, publish
``--attestations`` monthly feeds in all (~lognormal per supplier, at least one each), each a
small valid feed (capability, ppm, delivery, lead time and certificate records) chained to the
supplier's previous one. Worker processes generate and sign them (DSSE envelopes around in-toto
Statements, as ``sqm.client.requests.attestation`` builds them) and validate every
``--validate-every``-th feed with ``sqm.validator.validate`` (the run aborts on any error).
Then, in one process and in log order (by time), what ``Ingest.register_supplier`` and
``Ingest.attest`` write, in bulk transactions: key leaves with real proofs of possession
(``bundle.key_leaf``), attestation leaves (``bundle.attestation_leaf``, chained), rows in
``suppliers``, ``supplier_keys`` and ``attestations``, sequenced into ``log_pending``; then the
registry's own ``TransparencyLog.integrate(limit=--batch)`` builds the tree, its subtree hashes
and one signed, RFC 3161 timestamped checkpoint per batch, and ``Indexer.catch_up()`` builds
the search index from the log. Before any of it, a few suppliers go through the real
``Ingest`` in a scratch registry: their rows must be the ones the bulk path writes. After it,
``TransparencyLog.fsck`` and a sample of bundles verified with ``sqm.trust.bundle.verify``.
With ``--data DIR`` the seeded store stays there, and ``--reuse`` serves it again when it was
seeded with the same parameters. PostgreSQL (``--backends sqlite,postgresql``): a fresh
database, filled with the same rows as the SQLite store (COPY), analysed, dropped afterwards.

Load: ``gunicorn -w --workers 'sqm.registry.wsgi:app'`` (background integration off) on each
store; ``--clients`` client processes (http.client, keep-alive; several levels, e.g. ``1,4``)
share a shuffled mix of ``--requests`` requests of each kind: buyer searches with 3-5 filters
(``--searches`` of them, five templates: metric thresholds, country, certification valid today,
classification, characteristic class, freshness) through the API and the search page, supplier
JSON profiles and supplier pages, bundles and attestation pages of random attestations (new
ones on each pass, so that no pass profits from the pages' verification memo), and a SPARQL
query (LIMIT 100). Percentiles count every request, a failed one with the time it took. With
``--also-without-searches``, the other kinds once more without the searches, which otherwise
hold the sync workers. The first SPARQL query starts the data folder's SPARQL engine, which
every worker then asks (its store on disk in ``<data>/sparql``: the first run builds it from
every supplier's latest feed, later runs reopen it and load what changed); that warm-up, one
client per worker at once, is timed separately (SPARQL is left out of the load when it fails), and the engine's load time and memory are measured in-process on
``--sparql-sample`` suppliers in memory and extrapolated.

Baseline, measured in the same run on the same store: the SQL of each search
(``SupplierSearch.statement``) executed directly through SQLAlchemy in this process, idle.

Targets (the registry issue): p99 <= 50 ms for API searches, <= 100 ms for pages.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import pickle
import queue
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, select, text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import search_data  # noqa: E402
from harness import HOST, POSTGRES_ADMIN, postgres_database  # noqa: E402

from sqm.registry.config import RegistryConfig  # noqa: E402
from sqm.registry.db import (  # noqa: E402
    attestations,
    index_attestations,
    index_facts,
    index_suppliers,
    log_entries,
    log_pending,
    make_engine,
    metadata,
    supplier_keys,
    suppliers,
    utc,
)
from sqm.registry.indexer import Indexer  # noqa: E402
from sqm.registry.log import TransparencyLog  # noqa: E402
from sqm.registry.query import parse  # noqa: E402
from sqm.registry.search import SupplierSearch  # noqa: E402
from sqm.registry.secrets import load_or_create  # noqa: E402

SEED_FORMAT = 1  # bump when the generated data changes, so that --reuse reseeds
CHUNK = 20_000  # log entries per bulk transaction

SEARCH_API, SEARCH_PAGE = "search API", "search page"
PROFILE, SUPPLIER_PAGE = "supplier JSON", "supplier page"
BUNDLE, ATTESTATION_PAGE = "bundle", "attestation page"
SPARQL = "SPARQL"
KINDS = (SEARCH_API, SEARCH_PAGE, PROFILE, SUPPLIER_PAGE, BUNDLE, ATTESTATION_PAGE, SPARQL)
# The targets: p99 <= 50 ms for API searches, <= 100 ms for pages. The other API reads
# (profile, bundle) are held to the API figure; SPARQL has no target.
TARGETS: dict[str, tuple[float, str]] = {
    SEARCH_API: (50.0, "API search"),
    SEARCH_PAGE: (100.0, "page"),
    SUPPLIER_PAGE: (100.0, "page"),
    ATTESTATION_PAGE: (100.0, "page"),
    PROFILE: (50.0, "API read (by extension)"),
    BUNDLE: (50.0, "API read (by extension)"),
}
SPARQL_QUERY = """PREFIX sqm: <https://w3id.org/sqm/v0.1/>
PREFIX reg: <https://w3id.org/sqm/v0.1/registry/>
SELECT ?supplier ?bundle ?cpk WHERE {
  GRAPH ?g {
    ?record sqm:cpk ?cpk ; sqm:characteristic ?feature .
    ?feature sqm:special_characteristic_class "critical" .
    ?entry reg:supplier ?supplier ; reg:bundle ?bundle .
  }
  FILTER(?cpk >= 1.67)
} LIMIT 100"""


# --- the searches a buyer makes ---------------------------------------------------------------


def _country(rng: random.Random) -> str:
    return str(search_data._weighted(rng, search_data.COUNTRIES)[0])


def _family(rng: random.Random) -> tuple[str, str, str, float]:
    return rng.choices(search_data.FAMILIES, weights=search_data.FAMILY_WEIGHTS)[0]


def search_args(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    """A typical buyer search: (template name, query parameters), 3 to 5 filters."""
    template = rng.choice(("automotive", "quality", "critical", "delivery", "customs"))
    unspsc, hs, _, _ = _family(rng)
    if template == "automotive":  # 5 filters
        return template, [
            ("where", f"capability_records.cpk>={rng.choice(('1.33', '1.33', '1.67'))}"),
            ("where", f"delivery_records.on_time_percent>={rng.choice((90, 95, 95, 98))}"),
            ("country", _country(rng)),
            ("certification", "IATF_16949"),
            ("classification", f"UNSPSC:{unspsc[:4]}*"),
        ]
    if template == "quality":  # 3 filters
        return template, [
            ("where", f"defect_rate_records.ppm<={rng.choice((10, 50, 50, 100))}"),
            ("where", "capability_records.cpk>=1.33"),
            ("certification", "ISO_9001"),
        ]
    if template == "critical":  # 4 filters
        return template, [
            ("where", "capability_records.cpk>=1.67"),
            ("characteristic_class", "critical"),
            ("classification", f"UNSPSC:{unspsc}"),
            ("country", _country(rng)),
        ]
    if template == "delivery":  # 4 filters
        return template, [
            ("where", f"delivery_records.on_time_percent>={rng.choice((95, 98))}"),
            ("where", f"lead_time_records.quoted_lead_time<={rng.choice((2, 3, 4))} WEE"),
            ("country", _country(rng)),
            ("fresh_within", "45"),
        ]
    return (
        template,
        [  # customs: 4 filters
            ("where", f"defect_rate_records.ppm<={rng.choice((50, 100))}"),
            ("where", "delivery_records.on_time_percent>=90"),
            ("certification", "ISO_14001"),
            ("classification", f"HS:{hs[:4]}*"),
        ],
    )


def as_query(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    args: dict[str, list[str]] = {}
    for name, value in pairs:
        args.setdefault(name, []).append(value)
    return args


# --- seeding -----------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What was seeded and how long it took (kept in ``<data>/seeded.json``)."""

    suppliers: int
    attestations: int
    seed: int
    format: int = SEED_FORMAT
    log_size: int = 0
    checkpoints: int = 0
    index_facts: int = 0
    generate_s: float = 0.0
    stage_s: float = 0.0
    load_s: float = 0.0
    integrate_s: float = 0.0
    index_s: float = 0.0
    fsck_s: float = 0.0
    validated: int = 0
    envelope_bytes: float = 0.0
    records_per_feed: float = 0.0
    sqlite_bytes: int = 0
    seeded_at: str = ""
    fsck: str = ""
    bundles_verified: int = 0

    def matches(self, args: argparse.Namespace) -> bool:
        return (self.suppliers, self.attestations, self.seed, self.format) == (
            args.suppliers,
            args.attestations,
            args.seed,
            SEED_FORMAT,
        )


def _generate(task: tuple[int, int, list[int], datetime, int, int]) -> dict[str, Any]:
    """Worker: one chunk of suppliers, generated, signed and partly validated."""
    from sqm.validator import Severity, validate

    seed, start, counts, end, validate_every, _ = task
    staged: list[tuple[float, int, bytes]] = []
    validated, errors, size, records = 0, [], 0, 0
    for offset, count in enumerate(counts):
        registration, made = search_data.supplier_rows(
            seed, start + offset, count, end, validate_every
        )
        staged.append((registration.at.timestamp(), 0, pickle.dumps(registration)))
        for item in made:
            if item.feed is not None:
                result = validate(item.feed, now=item.at)
                validated += 1
                bad = [f for f in result.findings if f.severity is Severity.ERROR]
                if bad and len(errors) < 5:
                    errors.append(f"{item.identity} #{item.feed_sequence}: {bad[0].to_dict()}")
                records += sum(len(v) for k, v in item.feed.items() if k.endswith("_records"))
                item = search_data.Attestation(**{**asdict_shallow(item), "feed": None})
            size += len(item.envelope)
            staged.append((item.at.timestamp(), 1, pickle.dumps(item)))
    return {
        "staged": staged,
        "validated": validated,
        "errors": errors,
        "bytes": size,
        "records": records,
    }


def asdict_shallow(item: Any) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__dataclass_fields__}


def _seeding_engine(url: str) -> Engine:
    """The registry's engine, tables created; for SQLite also a large page cache and no fsync
    while seeding (the rows are the same; a crash would only mean seeding again)."""
    engine = make_engine(url)
    engine.dispose()
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _fast(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            # Each database of the connection: the log's file and the index's (attached).
            for schema in [row[1] for row in cursor.execute("PRAGMA database_list")]:
                if schema != "temp":
                    cursor.execute(f"PRAGMA {schema}.synchronous=OFF")
                    cursor.execute(f"PRAGMA {schema}.cache_size=-1000000")
            cursor.close()

    return engine


def check_ingest_equivalence(args: argparse.Namespace, end: datetime, count: int = 3) -> str:
    """Run ``count`` suppliers' first feeds through the real ``Ingest`` in a scratch registry
    and compare what it stored with what the bulk path writes."""
    from sqm.client import requests as signed
    from sqm.registry.ingest import Ingest

    with tempfile.TemporaryDirectory(prefix="sqm_bench_") as folder:
        config = RegistryConfig(data_dir=Path(folder))
        keys = load_or_create(Path(folder) / "keys", config.origin)
        engine = make_engine(config.url)
        try:
            log = TransparencyLog(engine, config.origin, keys.log_key, keys.authority)
            ingest = Ingest(log, indexer=Indexer(engine))
            checked = 0
            for number in range(min(count, args.suppliers)):
                supplier = search_data.profile(args.seed, number)
                registration, made = search_data.supplier_rows(args.seed, number, 2, end, 1)
                ingest.now = lambda at=registration.at: at
                ingest.register_supplier(signed.registration(supplier.organization, supplier.key))
                for item in made:
                    assert item.feed is not None
                    ingest.now = lambda at=item.at: at
                    envelope = signed.attestation(item.feed, supplier.key)
                    status, _ = ingest.attest(envelope.to_json())
                    if status != 201:
                        raise SystemExit(f"ABORT: Ingest answered {status} for a generated feed")
                    with engine.connect() as connection:
                        row = connection.execute(
                            select(
                                attestations.c.payload_sha256,
                                attestations.c.key_id,
                                attestations.c.envelope,
                                attestations.c.feed_sequence,
                            ).where(attestations.c.payload_sha256 == item.payload_sha256)
                        ).first()
                    if row is None or tuple(row) != (
                        item.payload_sha256,
                        item.key_id,
                        item.envelope,
                        item.feed_sequence,
                    ):
                        raise SystemExit("ABORT: Ingest stored another attestation row")
                    checked += 1
                with engine.connect() as connection:
                    key_leaf = connection.execute(
                        select(log_entries.c.leaf)
                        .join(supplier_keys, supplier_keys.c.seq == log_entries.c.seq)
                        .where(supplier_keys.c.supplier == supplier.identity)
                    ).scalar()
                if key_leaf is None or bytes(key_leaf) != registration.leaf:
                    raise SystemExit("ABORT: Ingest logged another key leaf")
            return f"{checked} feeds of {min(count, args.suppliers)} suppliers"
        finally:
            engine.dispose()


def seed(data: Path, args: argparse.Namespace) -> Seeded:
    """Seed the SQLite store in ``data``; see the module's docstring."""
    result = Seeded(args.suppliers, args.attestations, args.seed)
    end = datetime.now(UTC)
    print(f"  the bulk rows equal what Ingest stores: {check_ingest_equivalence(args, end)}")
    counts = search_data.feed_counts(args.seed, args.suppliers, args.attestations)
    staging_path = data / "staging.sqlite3"
    staging_path.unlink(missing_ok=True)
    staging = sqlite3.connect(staging_path)
    staging.execute("PRAGMA journal_mode=OFF")
    staging.execute("PRAGMA synchronous=OFF")
    staging.execute("CREATE TABLE staged (at REAL NOT NULL, kind INTEGER NOT NULL, body BLOB)")
    per_task = 100
    tasks = [
        (args.seed, start, counts[start : start + per_task], end, args.validate_every, 0)
        for start in range(0, args.suppliers, per_task)
    ]
    started = time.perf_counter()
    done = 0
    envelope_bytes = 0
    records = 0
    progress = Progress("generated and signed", args.attestations)
    context = multiprocessing.get_context("fork")
    with context.Pool(args.jobs) as pool:
        for made in pool.imap(_generate, tasks):
            if made["errors"]:
                pool.terminate()
                raise SystemExit(
                    "ABORT: generated feeds have validation errors: " + "; ".join(made["errors"])
                )
            staging.executemany("INSERT INTO staged VALUES (?, ?, ?)", made["staged"])
            done += sum(1 for row in made["staged"] if row[1] == 1)
            result.validated += made["validated"]
            envelope_bytes += made["bytes"]
            records += made["records"]
            progress.show(done)
    staging.commit()
    result.generate_s = time.perf_counter() - started
    result.envelope_bytes = envelope_bytes / args.attestations
    result.records_per_feed = records / max(1, result.validated)
    print(
        f"  generated, signed and staged {args.attestations:,} feeds of {args.suppliers:,} "
        f"suppliers in {result.generate_s:.0f} s ({args.attestations / result.generate_s:,.0f}/s "
        f"on {args.jobs} processes); {result.validated:,} validated (every "
        f"{args.validate_every}th): no errors; envelope {result.envelope_bytes / 1000:.1f} kB, "
        f"{result.records_per_feed:.1f} records a feed"
    )

    config = RegistryConfig(data_dir=data)
    keys = load_or_create(data / "keys", config.origin)
    engine = _seeding_engine(config.url)
    try:
        started = time.perf_counter()
        staging.execute("CREATE INDEX staged_order ON staged (at, kind)")
        result.stage_s = time.perf_counter() - started
        started = time.perf_counter()
        load_rows(engine, staging, args.attestations + args.suppliers)
        result.load_s = time.perf_counter() - started
        staging.close()
        staging_path.unlink()
        entries = args.attestations + args.suppliers
        print(
            f"  sequenced {entries:,} entries in log order (registrations and attestations, "
            f"with their rows) in {result.load_s:.0f} s ({entries / result.load_s:,.0f}/s)"
        )

        log = TransparencyLog(engine, config.origin, keys.log_key, keys.authority)
        started = time.perf_counter()
        progress = Progress("integrated", entries)
        while (signed := log.integrate(limit=args.batch)) is not None:
            result.checkpoints += 1
            progress.show(signed.checkpoint.size)
        result.integrate_s = time.perf_counter() - started
        result.log_size = log.size()
        print(
            f"  log.integrate: {result.log_size:,} entries in {result.integrate_s:.0f} s "
            f"({result.log_size / result.integrate_s:,.0f}/s), {result.checkpoints} signed, "
            f"timestamped checkpoints"
        )

        indexer = Indexer(engine, batch=args.index_batch)
        started = time.perf_counter()
        watcher = IndexWatcher(indexer, result.log_size)
        watcher.start()
        try:
            indexer.catch_up()
        finally:
            watcher.stop()
        result.index_s = time.perf_counter() - started
        with engine.connect() as connection:
            result.index_facts = int(
                connection.execute(select(func.count()).select_from(index_facts)).scalar() or 0
            )
        print(
            f"  Indexer.catch_up: {args.attestations:,} attestations in {result.index_s:.0f} s "
            f"({args.attestations / result.index_s:,.0f}/s), {result.index_facts:,} facts"
        )

        started = time.perf_counter()
        problems = log.fsck()
        result.fsck_s = time.perf_counter() - started
        result.fsck = "intact" if not problems else "; ".join(problems[:3])
        print(f"  TransparencyLog.fsck: {result.fsck} ({result.fsck_s:.0f} s)")
        if problems:
            raise SystemExit("ABORT: the seeded log does not check out")
        result.bundles_verified = verify_bundles(log, args.seed)
        print(f"  {result.bundles_verified} random bundles verify (sqm.trust.bundle.verify)")
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    result.sqlite_bytes = sqlite_size(data)
    result.seeded_at = datetime.now(UTC).isoformat()
    (data / "seeded.json").write_text(json.dumps(asdict(result), indent=1))
    return result


class Progress:
    """Progress: a line redrawn every second on a terminal, a line a minute otherwise."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total = what, total
        self.tty = sys.stdout.isatty()
        self.started = self.shown = time.perf_counter()

    def show(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.shown > (1 if self.tty else 60):
            self.shown = now
            rate = done / max(1e-9, now - self.started)
            line = f"    {self.what} {done:,}/{self.total:,} ({rate:,.0f}/s)"
            print(f"{line}   ", end="\r", flush=True) if self.tty else print(line, flush=True)


class IndexWatcher:
    """Prints the indexer's position every minute (indexing a million feeds takes a while)."""

    def __init__(self, indexer: Indexer, size: int) -> None:
        self.indexer, self.size = indexer, size
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.started = time.perf_counter()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def run(self) -> None:
        while not self.stopped.wait(60):
            with contextlib.suppress(Exception):
                position = self.indexer.position()
                elapsed = time.perf_counter() - self.started
                print(
                    f"    indexed through log entry {position:,} of {self.size:,} "
                    f"after {elapsed:.0f} s",
                    flush=True,
                )


def load_rows(engine: Engine, staging: sqlite3.Connection, total: int) -> None:
    """What Ingest writes for each staged registration and attestation, in time order, in
    bulk transactions; sequence numbers are given explicitly, in the same order."""
    cursor = staging.execute("SELECT kind, body FROM staged ORDER BY at, kind")
    with engine.connect() as connection:
        top = connection.execute(select(func.max(log_pending.c.seq))).scalar()
        top = max(
            int(top or 0),
            int(connection.execute(select(func.max(log_entries.c.seq))).scalar() or 0),
        )
    seq = top
    progress = Progress("sequenced", total)
    done = 0
    while batch := cursor.fetchmany(CHUNK):
        pending, people, keys, rows = [], [], [], []
        for kind, body in batch:
            item = pickle.loads(body)
            seq += 1
            received = utc(item.at)
            if kind == 0:
                pending.append(
                    {"seq": seq, "leaf": item.leaf, "received_at": received, "chain": None}
                )
                people.append(
                    {
                        "id": item.identity,
                        "name": item.organization["name"],
                        "identity": json.dumps(item.organization),
                        "verification": "unverified",
                        "role": "supplier",
                    }
                )
                keys.append(
                    {
                        "key_id": item.key_id,
                        "supplier": item.identity,
                        "public_key": item.public,
                        "valid_from": received,
                        "seq": seq,
                    }
                )
            else:
                pending.append(
                    {
                        "seq": seq,
                        "leaf": item.leaf,
                        "received_at": received,
                        "chain": f"attestations:{item.identity}",
                    }
                )
                rows.append(
                    {
                        "seq": seq,
                        "supplier": item.identity,
                        "feed_sequence": item.feed_sequence,
                        "payload_sha256": item.payload_sha256,
                        "key_id": item.key_id,
                        "envelope": item.envelope,
                    }
                )
        with engine.connect().execution_options(sqm_write=True) as connection, connection.begin():
            for table, values in (
                (log_pending, pending), (suppliers, people), (supplier_keys, keys),
                (attestations, rows),
            ):  # fmt: skip
                if values:
                    connection.execute(table.insert(), values)
        done += len(batch)
        progress.show(done)


def verify_bundles(log: TransparencyLog, seed: int, count: int = 20) -> int:
    """Verify ``count`` random attestations' bundles as a buyer would, offline."""
    from sqm.registry.ingest import Ingest
    from sqm.trust import bundle

    ingest = Ingest(log)
    root = log.trust_root()
    rng = random.Random(f"{seed}:bundles")
    size = log.size()
    verified = 0
    with log.engine.connect() as connection:
        for _ in range(count):
            index = connection.execute(
                select(func.min(index_attestations.c.log_index)).where(
                    index_attestations.c.log_index >= rng.randrange(size)
                )
            ).scalar()
            if index is None:
                continue
            report = bundle.verify(ingest.bundle_at(int(index)), root)
            if not report.ok:
                failed = [s for s in report.steps if not s.ok]
                raise SystemExit(f"ABORT: the bundle of entry {index} does not verify: {failed}")
            verified += 1
    return verified


def sqlite_size(data: Path) -> int:
    return sum(path.stat().st_size for path in data.glob("registry.sqlite3*") if path.is_file())


# --- PostgreSQL --------------------------------------------------------------------------------


def copy_to_postgres(sqlite_url: str, postgres_url: str) -> tuple[float, int]:
    """Every table of the seeded SQLite store into a fresh PostgreSQL registry (COPY), the
    serial sequence moved past the copied entries, then VACUUM ANALYZE, as autovacuum would
    do after so many inserts (without the visibility map it sets, every index-only scan of
    the searches also reads the table's rows)."""
    source = make_engine(sqlite_url)  # with the index's file attached
    target = make_engine(postgres_url)
    started = time.perf_counter()
    try:
        raw = target.raw_connection()
        try:
            driver: Any = raw.driver_connection
            with source.connect() as reading:
                for table in metadata.sorted_tables:
                    columns = [column.name for column in table.columns]
                    zoned = [
                        n
                        for n, column in enumerate(table.columns)
                        if getattr(column.type, "timezone", False)
                    ]
                    names = ", ".join(f'"{c}"' for c in columns)
                    with (
                        driver.cursor() as cursor,
                        cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy,
                    ):
                        result = reading.execution_options(yield_per=20_000).execute(select(table))
                        for row in result:
                            values = list(row)
                            for n in zoned:
                                if values[n] is not None:
                                    values[n] = utc(values[n])
                            copy.write_row(values)
                    driver.commit()
            with driver.cursor() as cursor:
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence('log_pending', 'seq'), "
                    "(SELECT max(seq) FROM log_entries))"
                )
            driver.commit()
            driver.autocommit = True
            with driver.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
            driver.autocommit = False
        finally:
            raw.close()
        with target.connect() as connection:
            size = int(
                connection.execute(text("SELECT pg_database_size(current_database())")).scalar()
                or 0
            )
        return time.perf_counter() - started, size
    finally:
        source.dispose()
        target.dispose()


# --- SPARQL engine load, in-process --------------------------------------------------------------


def _rss() -> int:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _sparql_probe(url: str, sample: int, pipe: Any) -> None:
    """Child: the registry's SPARQL store (``sqm.registry.sparql._Store``) loading the
    ``sample`` suppliers with the newest feeds, timed, with memory; then the query, timed."""
    try:
        from sqm.registry.profiles import Profiles
        from sqm.registry.sparql import _Store
        from sqm.schema.rdf import typed_jsonld

        store = _Store(url)
        with store.engine.connect() as connection:
            newest = connection.execute(select(func.max(index_suppliers.c.latest_index))).scalar()
        if newest is not None:  # imports and first-use caches, before memory is measured
            feed = Profiles(store.engine).feed(int(newest))
            store.store.load(
                json.dumps(typed_jsonld(feed)).encode(), format=store.ox.RdfFormat.JSON_LD
            )
            store.store.clear()
        with store.engine.connect() as connection:
            start = connection.execute(
                select(index_suppliers.c.latest_index)
                .order_by(index_suppliers.c.latest_index.desc())
                .offset(sample)
                .limit(1)
            ).scalar()
            total = int(
                connection.execute(select(func.count()).select_from(index_suppliers)).scalar() or 0
            )
        store.position = -1 if start is None else int(start)
        before = _rss()
        began = time.perf_counter()
        store.refresh()
        loaded = time.perf_counter() - began
        grown = _rss() - before
        quads = len(store.store)
        times = []
        for _ in range(5):
            began = time.perf_counter()
            store.run(SPARQL_QUERY, 10_000, "text/turtle")
            times.append(time.perf_counter() - began)
        pipe.send(("ok", min(sample, total), total, loaded, grown, quads, sorted(times)[2]))
    except Exception as exc:  # reported, not raised: the run goes on without this figure
        pipe.send(("failed", repr(exc)))


def sparql_probe(url: str, sample: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_sparql_probe, args=(url, sample, child))
    process.start()
    child.close()
    try:
        answer = parent.recv()
    except EOFError:
        answer = ("failed", "the probe process died")
    process.join()
    if answer[0] != "ok":
        return {"error": answer[1]}
    loaded, total, seconds, grown, quads, query = answer[1:]
    return {
        "loaded": loaded,
        "total": total,
        "seconds": seconds,
        "bytes": grown,
        "quads": quads,
        "query_s": query,
        "full_s": seconds * total / max(1, loaded),
        "full_bytes": grown * total / max(1, loaded),
    }


# --- the server ----------------------------------------------------------------------------------


@contextlib.contextmanager
def gunicorn(
    data: Path, database: str | None, workers: int, timeout: int
) -> Iterator[tuple[int, Path]]:
    """The seeded store under gunicorn (``harness.gunicorn``), background integration off, its
    files in a scratch folder; yields the port and its log file (kept in ``data`` after)."""
    with tempfile.TemporaryDirectory(prefix="sqm_bench_") as folder:
        scratch = Path(folder)
        settings = {"SQM_REGISTRY_DATA": str(data), "SQM_REGISTRY_INTEGRATE_EVERY": "off"}
        if database:
            settings["SQM_REGISTRY_DATABASE"] = database
        options = ["--timeout", str(timeout)]
        with harness.gunicorn(scratch, settings, workers, options, boot_seconds=300) as served:
            try:
                yield served
            finally:
                # The log dies with the folder: keep what the report needs.
                shutil.copy(served[1], data / f"gunicorn-{served[0]}.log")


def server_problems(log_path: Path) -> dict[str, int]:
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    return {"tracebacks": log.count("Traceback"), "worker timeouts": log.count("WORKER TIMEOUT")}


# --- the load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    kind: str
    path: str
    template: str = ""
    accept: str = "*/*"


def workload(
    engine: Engine,
    args: argparse.Namespace,
    searches: list[tuple[str, list[tuple[str, str]]]],
    sparql: bool,
    salt: int,
) -> list[Request]:
    """``--requests`` requests of each kind, shuffled: the searches given; other suppliers and
    attestations on each pass (``salt``), so that no pass finds the pages' verification memo
    (``pages._CHECKED``) filled by an earlier one."""
    rng = random.Random(f"{args.seed}:workload:{salt}")
    count = args.requests
    requests: list[Request] = []
    for template, pairs in searches:
        query = urllib.parse.urlencode(pairs)
        requests.append(Request(SEARCH_API, f"/api/v1/search/suppliers?{query}", template))
        requests.append(Request(SEARCH_PAGE, f"/suppliers?{query}", template))
    for _ in range(count):
        identity = search_data.profile(args.seed, rng.randrange(args.suppliers)).identity
        quoted = urllib.parse.quote(identity, safe=":")
        requests.append(Request(PROFILE, f"/api/v1/suppliers/{quoted}", accept="application/json"))
        identity = search_data.profile(args.seed, rng.randrange(args.suppliers)).identity
        requests.append(
            Request(SUPPLIER_PAGE, f"/suppliers/{urllib.parse.quote(identity, safe=':')}")
        )
    with engine.connect() as connection:
        size = int(connection.execute(select(func.max(log_entries.c.idx))).scalar() or 0) + 1
        for kind in (BUNDLE, ATTESTATION_PAGE):
            for _ in range(count):
                index = connection.execute(
                    select(func.min(index_attestations.c.log_index)).where(
                        index_attestations.c.log_index >= rng.randrange(size)
                    )
                ).scalar()
                if index is None:
                    index = connection.execute(
                        select(func.max(index_attestations.c.log_index))
                    ).scalar()
                path = f"/api/v1/bundles/{index}" if kind == BUNDLE else f"/attestations/{index}"
                requests.append(Request(kind, path))
    if sparql:
        query = urllib.parse.urlencode({"query": SPARQL_QUERY})
        for _ in range(count):
            requests.append(
                Request(SPARQL, f"/api/v1/sparql?{query}", accept="application/sparql-results+json")
            )
    requests = [request for request in requests if request.kind in args.kinds]
    rng.shuffle(requests)
    return requests


def client(port: int, share: list[Request], barrier: Any, results: Any) -> None:
    """Send each request in turn over one keep-alive connection (http.client reconnects when
    the server closes it); report every latency, status and answer size."""
    connection = http.client.HTTPConnection(HOST, port, timeout=300)
    samples: list[tuple[str, str, float, int, int]] = []
    failures: list[str] = []
    barrier.wait(timeout=120)
    start = time.perf_counter()
    for item in share:
        sent = time.perf_counter()
        try:
            connection.request("GET", item.path, headers={"Accept": item.accept})
            response = connection.getresponse()
            status, body = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            status, body = 0, repr(exc).encode()
            connection.close()
        samples.append((item.kind, item.template, time.perf_counter() - sent, status, len(body)))
        if status != 200 and len(failures) < 5:
            failures.append(f"{item.kind} {item.path[:120]} -> {status}: {body[:200]!r}")
    end = time.perf_counter()
    connection.close()
    results.put((start, end, samples, failures))


@dataclass
class Load:
    clients: int
    seconds: float
    samples: list[tuple[str, str, float, int, int]]
    failures: list[str]


def drive(port: int, requests: list[Request], clients: int) -> Load:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients)
    results = context.Queue()
    shares = [requests[n::clients] for n in range(clients)]
    processes = [
        context.Process(target=client, args=(port, share, barrier, results)) for share in shares
    ]
    for process in processes:
        process.start()
    reports: list[Any] = []
    try:
        while len(reports) < len(processes):
            try:
                reports.append(results.get(timeout=1))
            except queue.Empty:
                if any(process.is_alive() for process in processes):
                    continue
                try:
                    reports.append(results.get(timeout=5))
                except queue.Empty:
                    raise SystemExit("ABORT: client processes died without a report") from None
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    seconds = max(r[1] for r in reports) - min(r[0] for r in reports)
    return Load(
        clients,
        seconds,
        [s for r in reports for s in r[2]],
        [f for r in reports for f in r[3]],
    )


def sparql_warmup(port: int, workers: int, wait: float) -> list[tuple[float, str]]:
    """The first SPARQL queries, one client per worker (concurrently), each repeated while the
    engine answers 503 (loading) for at most ``wait`` seconds: (seconds, outcome) each."""
    outcomes: list[tuple[float, str]] = []
    query = urllib.parse.urlencode({"query": SPARQL_QUERY})

    def one() -> None:
        began = time.perf_counter()
        loading = 0
        while True:
            connection = http.client.HTTPConnection(HOST, port, timeout=wait)
            try:
                connection.request(
                    "GET",
                    f"/api/v1/sparql?{query}",
                    headers={"Accept": "application/sparql-results+json"},
                )
                response = connection.getresponse()
                body = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, f"no answer: {exc!r}".encode()
            finally:
                connection.close()
            if status == 503 and time.perf_counter() - began < wait:
                loading += 1
                time.sleep(2.0)
                continue
            break
        outcome = f"{status}" + (
            "" if status == 200 else f" {' '.join(body[:300].decode(errors='replace').split())}"
        )
        if loading:
            outcome += f" (after {loading} answers 503 while the engine loaded)"
        outcomes.append((time.perf_counter() - began, outcome))

    threads = [threading.Thread(target=one) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


# --- the baseline --------------------------------------------------------------------------------


@dataclass
class Raw:
    seconds: list[float] = field(default_factory=list)
    by_template: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    hits: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


def raw_sql(engine: Engine, searches: list[tuple[str, list[tuple[str, str]]]], log: Any) -> Raw:
    """Each search's SQL (``SupplierSearch.statement``) executed and fetched through SQLAlchemy
    in this process, one at a time, after a warm-up."""
    search = SupplierSearch(log, Indexer(engine))
    now = datetime.now(UTC)
    statements = [(t, search.statement(parse(as_query(p), now), now)) for t, p in searches]
    raw = Raw()
    with engine.connect() as connection:
        for _, statement in statements[:20]:
            connection.execute(statement).all()
        for template, statement in statements:
            began = time.perf_counter()
            rows = connection.execute(statement).all()
            elapsed = time.perf_counter() - began
            raw.seconds.append(elapsed)
            raw.by_template[template].append(elapsed)
            raw.hits[template].append(len(rows))
    return raw


def explain(engine: Engine, searches: list[tuple[str, list[tuple[str, str]]]], log: Any) -> None:
    """The query plan of one search of each template."""
    search = SupplierSearch(log, Indexer(engine))
    now = datetime.now(UTC)
    seen: set[str] = set()
    for template, pairs in searches:
        if template in seen:
            continue
        seen.add(template)
        statement = search.statement(parse(as_query(pairs), now), now)
        compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
        sql = str(compiled)
        print(f"  plan of the {template!r} search ({urllib.parse.urlencode(pairs)}):")
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
                for row in rows:
                    print(f"    {row[0]:>3} {row[1]:>3} {row[3]}")
            else:
                rows = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}").all()
                for row in rows:
                    print(f"    {row[0]}")


# --- reporting -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def report(backend: str, load: Load, raw: Raw, verdicts: list[str]) -> None:
    by_kind: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    by_template: dict[str, list[float]] = defaultdict(list)
    sizes: dict[str, list[int]] = defaultdict(list)
    for kind, template, seconds, status, size in load.samples:
        # Failed requests count with the time they took: that is what the client waited.
        statuses[kind][status] += 1
        by_kind[kind].append(seconds)
        if kind == SEARCH_API:
            by_template[template].append(seconds)
        if status == 200:
            sizes[kind].append(size)
    total = len(load.samples)
    print(
        f"  {backend}, {load.clients} client process{'es' if load.clients > 1 else ''}: "
        f"{total:,} requests in {load.seconds:.1f} s ({total / load.seconds:,.1f} req/s)"
    )
    raw_p50, raw_p99 = percentile(raw.seconds, 0.5), percentile(raw.seconds, 0.99)
    print(
        "    (percentiles over every request, failed ones with the time they took; ok = "
        "answered 200)"
    )
    print(
        f"    {'kind':17} {'ok':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'kB':>6} "
        f"{'target':>7} {'verdict':>8}  {'raw SQL p50/p99 ms':>18} {'ratio p50/p99':>14}"
    )
    for kind in KINDS:
        if kind not in statuses:
            continue
        times = by_kind.get(kind, [])
        ok = statuses[kind][200]
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        mean = 1000 * sum(times) / len(times) if times else float("nan")
        kb = sum(sizes[kind]) / len(sizes[kind]) / 1000 if sizes[kind] else 0.0
        target, what = TARGETS.get(kind, (float("nan"), ""))
        verdict = "—"
        if not math.isnan(target):
            failed = ok != sum(statuses[kind].values())
            verdict = "MET" if p99 <= target and not failed else "NOT MET"
            verdicts.append(
                f"{backend}, {load.clients} clients: {kind} p99 {p99:.1f} ms (target <= "
                f"{target:g} ms, {what}): {verdict}"
                + (f"; {sum(statuses[kind].values()) - ok} failed requests" if failed else "")
            )
        baseline = ratio = ""
        if kind in (SEARCH_API, SEARCH_PAGE):
            baseline = f"{raw_p50:8.2f} /{raw_p99:8.2f}"
            ratio = f"{p50 / raw_p50:6.2f} /{p99 / raw_p99:6.2f}"
        print(
            f"    {kind:17} {ok:5} {p50:8.1f} {p99:8.1f} {mean:8.1f} {kb:6.1f} "
            f"{target:7.0f} {verdict:>8}  {baseline:>18} {ratio:>14}"
        )
    others = {k: {s: n for s, n in c.items() if s != 200} for k, c in statuses.items()}
    others = {k: v for k, v in others.items() if v}
    if others:
        print(f"    answers other than 200: {others}; e.g. {load.failures[:3]}")
    if not raw.by_template:
        return
    print(
        f"    API searches by template: {'template':10} {'n':>4} {'hits':>5} "
        f"{'API p50':>8} {'API p99':>8} {'SQL p50':>8} {'SQL p99':>8}"
    )
    for template in sorted(raw.by_template):
        api = by_template.get(template, [])
        hits = sorted(raw.hits[template])[len(raw.hits[template]) // 2]
        print(
            f"    {'':26}{template:10} {len(api):4} {hits:5} {percentile(api, 0.5):8.1f} "
            f"{percentile(api, 0.99):8.1f} {percentile(raw.by_template[template], 0.5):8.1f} "
            f"{percentile(raw.by_template[template], 0.99):8.1f}"
        )


# --- one backend ---------------------------------------------------------------------------------


def measure(
    backend: str,
    data: Path,
    url: str,
    database: str | None,
    args: argparse.Namespace,
    verdicts: list[str],
) -> None:
    config = RegistryConfig(data_dir=data, database_url=database)
    keys = load_or_create(data / "keys", config.origin)
    engine = make_engine(url)  # creates indexes added since the store was seeded
    started = time.perf_counter()
    Indexer(engine).upgrade()  # before the workers start, which would each wait for it
    print(f"  index format checked / upgraded in {time.perf_counter() - started:.1f} s")
    try:
        log = TransparencyLog(engine, config.origin, keys.log_key, keys.authority)
        rng = random.Random(f"{args.seed}:searches")
        searches = [search_args(rng) for _ in range(args.searches or args.requests)]
        if args.explain:
            explain(engine, searches, log)
        raw = Raw()
        if {SEARCH_API, SEARCH_PAGE} & set(args.kinds):
            raw = raw_sql(engine, searches, log)
            print(
                f"  raw SQL of the {len(searches)} searches (SupplierSearch.statement through "
                f"SQLAlchemy, in-process, idle): p50 {percentile(raw.seconds, 0.5):.2f} ms, "
                f"p99 {percentile(raw.seconds, 0.99):.2f} ms"
            )
        probe = (
            sparql_probe(url, args.sparql_sample) if args.sparql or args.sparql_probe_only else {}
        )
        if probe.get("error"):
            print(f"  SPARQL engine load probe failed: {probe['error']}")
        elif probe:
            print(
                f"  SPARQL engine (registry/sparql.py _Store): loading {probe['loaded']:,} of "
                f"{probe['total']:,} suppliers' latest feeds took {probe['seconds']:.1f} s "
                f"({1000 * probe['seconds'] / max(1, probe['loaded']):.1f} ms each, "
                f"{probe['quads'] / max(1, probe['loaded']):.0f} quads each) and "
                f"{probe['bytes'] / 1e6:.0f} MB in memory; all {probe['total']:,}: "
                f"~{probe['full_s']:.0f} s for the store on disk the first time it is built; "
                f"the query on that part: {1000 * probe['query_s']:.1f} ms"
            )
        with gunicorn(data, database, args.workers, args.gunicorn_timeout) as (port, log_path):
            sparql = args.sparql and not args.sparql_probe_only
            if args.sparql_probe_only:
                print("  SPARQL is left out of the load (--sparql-probe-only)")
            if sparql:
                outcomes = sparql_warmup(port, args.workers, args.sparql_wait)
                described = "; ".join(f"{outcome} after {s:.1f} s" for s, outcome in outcomes)
                print(
                    f"  SPARQL warm-up (first query on each of {args.workers} workers): {described}"
                )
                if any(not outcome.startswith("200") for _, outcome in outcomes):
                    sparql = False
                    print(
                        "  SPARQL is left out of the load: its engine did not come up "
                        f"(gunicorn --timeout {args.gunicorn_timeout} s; SparqlService "
                        f"restarts a load that makes no progress for 300 s); server log: {server_problems(log_path)}"
                    )
            load_average = os.getloadavg()
            print(
                f"  load average before the load: {load_average[0]:.2f} {load_average[1]:.2f} "
                f"{load_average[2]:.2f}"
            )
            for salt, clients in enumerate(args.clients):
                requests = workload(engine, args, searches, sparql, salt)
                load = drive(port, requests, clients)
                report(backend, load, raw, verdicts)
            requests = workload(engine, args, searches, sparql, len(args.clients))
            others = [r for r in requests if r.kind not in (SEARCH_API, SEARCH_PAGE)]
            if args.also_without_searches and others and len(others) < len(requests):
                print("  the other kinds without the searches (no request waits behind one):")
                load = drive(port, others, max(args.clients))
                report(f"{backend} without searches", load, Raw(), verdicts)
            problems = server_problems(log_path)
        print(f"  server log: {problems}")
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suppliers", type=int, default=100_000)
    parser.add_argument("--attestations", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, help="keep the seeded store in this folder")
    parser.add_argument("--reuse", action="store_true", help="serve the store in --data again")
    parser.add_argument("--backends", default="sqlite", help="sqlite, postgresql or both")
    parser.add_argument("--clients", default="4", help="client processes, e.g. 4 or 1,4")
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind")
    parser.add_argument(
        "--searches", type=int, help="searches (API and page each; default: --requests)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--gunicorn-timeout", type=int, default=30, help="gunicorn --timeout")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="seeding processes")
    parser.add_argument("--batch", type=int, default=50_000, help="entries per integration")
    parser.add_argument("--index-batch", type=int, default=2000, help="Indexer batch")
    parser.add_argument("--validate-every", type=int, default=100)
    parser.add_argument("--sparql-sample", type=int, default=2000)
    parser.add_argument("--sparql-wait", type=float, default=400.0)
    parser.add_argument("--no-sparql", dest="sparql", action="store_false")
    parser.add_argument(
        "--sparql-probe-only",
        action="store_true",
        help="measure the SPARQL engine's load on --sparql-sample suppliers in-process only "
        "(at full size every worker's engine would need several GB)",
    )
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="the kinds of request in the load (default: all), e.g. "
        "'supplier JSON,supplier page,bundle,attestation page'",
    )
    parser.add_argument("--explain", action="store_true", help="print the searches' plans")
    parser.add_argument(
        "--also-without-searches",
        action="store_true",
        help="then the other kinds alone, at the highest number of clients",
    )
    parser.add_argument("--seed-only", action="store_true", help="seed --data, measure nothing")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--postgres", default=POSTGRES_ADMIN, help="an admin URL to create the run's database"
    )
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "postgresql"}:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    args.sparql = args.sparql and SPARQL in args.kinds
    try:
        args.clients = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        parser.error("--clients takes numbers, e.g. 4 or 1,4")
    if args.suppliers < 1 or args.attestations < args.suppliers or min(args.clients) < 1:
        parser.error("need at least one supplier, an attestation per supplier and one client")
    if (args.reuse or args.seed_only) and args.data is None:
        parser.error("--reuse and --seed-only need --data")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with contextlib.ExitStack() as stack:
        if args.data is None:
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sqm_bench_")))
        else:
            data = args.data.resolve()
            data.mkdir(parents=True, exist_ok=True)
        marker = data / "seeded.json"
        seeded = None
        if args.reuse and marker.exists():
            seeded = Seeded(**json.loads(marker.read_text()))
            if not seeded.matches(args):
                print(f"{data} holds another seeding ({seeded.suppliers:,} suppliers); reseeding")
                seeded = None
        if seeded is None:
            for path in data.glob("registry.sqlite3*"):
                path.unlink()
            shutil.rmtree(data / "keys", ignore_errors=True)
            marker.unlink(missing_ok=True)
            print(
                f"seeding {args.suppliers:,} suppliers and {args.attestations:,} attestations "
                f"into {data}"
            )
            started = time.perf_counter()
            seeded = seed(data, args)
            print(f"  seeded in {time.perf_counter() - started:.0f} s")
        else:
            print(f"reusing the store seeded at {seeded.seeded_at} in {data}")
        print(
            f"store: {seeded.suppliers:,} suppliers, {seeded.attestations:,} attestations, log "
            f"size {seeded.log_size:,}, {seeded.checkpoints} checkpoints, "
            f"{seeded.index_facts:,} indexed facts; SQLite {seeded.sqlite_bytes / 1e9:.2f} GB; "
            f"seeding: generate+sign {seeded.generate_s:.0f} s, sequence {seeded.load_s:.0f} s, "
            f"integrate {seeded.integrate_s:.0f} s, index {seeded.index_s:.0f} s, fsck "
            f"{seeded.fsck_s:.0f} s ({seeded.fsck})"
        )
        if args.seed_only:
            return
        sqlite_url = f"sqlite:///{data / 'registry.sqlite3'}"
        verdicts: list[str] = []
        for backend in backends:
            print(f"{backend}:")
            if backend == "sqlite":
                measure(backend, data, sqlite_url, None, args, verdicts)
                continue
            with postgres_database(args.postgres) as url:
                seconds, size = copy_to_postgres(sqlite_url, url)
                print(
                    f"  copied the seeded store into PostgreSQL in {seconds:.0f} s (COPY, then "
                    f"VACUUM ANALYZE): {size / 1e9:.2f} GB"
                )
                measure(backend, data, url, url, args, verdicts)
        print()
        print(
            "targets (the registry issue): p99 <= 50 ms for API searches, <= 100 ms for pages "
            f"at {seeded.suppliers:,} suppliers / {seeded.attestations:,} attestations"
        )
        for verdict in verdicts:
            print(f"  {verdict}")


if __name__ == "__main__":
    main()
