"""Registry ingest under gunicorn, against the compute ceiling measured in the same run.

    python benchmarks/registry_ingest.py [--attestations 2000] [--clients W*T] [--workers 2]
        [--threads 6] [--backends sqlite,postgresql,compute] [--records 20] [--suppliers 64]
        [--index-trail N]

Everything is prepared before the clock starts: ``--suppliers`` suppliers, each with its own
Ed25519 key and a valid LEI; ``--attestations`` DSSE envelopes, each an in-toto Statement over
a realistic ``--records``-record feed (the records of ``benchmarks/generate_feed.py`` with only
the sites, products and characteristics they name), issued now; each supplier's feeds form a
chain (sequence 0, 1, ..., each naming its predecessor and its digest); every feed is checked with the validator first (the run aborts on any error).

Compute ceiling: in this one process, for the same envelopes, what the server must compute per
attestation besides storage (``registry/ingest.py``: ``attest``, ``_verify_signature``,
``_check_feed``): decode the request body and the envelope, verify the DSSE signature with the
supplier's public key, and validate the feed. It is reported for one process and scaled by the
cores the workers can use, min(workers, usable cores). It is measured over every envelope
before the first run and again over 1,000 of them after each run, and each run is set against
the mean of the two measured around it: this machine's speed drifts by a third within minutes.

Then, per backend (SQLite in a temporary folder, then a fresh PostgreSQL database that is
dropped afterwards): ``gunicorn -w N -k sqm.registry.balanced_worker.BalancedThreadWorker
--threads T 'sqm.registry.wsgi:app'`` on a free port (``--threads 1``: sync workers;
``--plain-gthread``: gunicorn's own ``-k gthread``), as the registry docs advise for ingest: concurrent
submissions in one worker share a write transaction (group commit); the suppliers
are registered over HTTP (``POST /api/v1/suppliers`` with a proof of possession); ``--clients``
client processes POST their share of the envelopes to ``/api/v1/attestations`` with
``http.client`` and record each request's latency (threaded workers keep the connection alive;
sync workers close it after each answer and http.client reconnects). Every answer must be 201 (the script exits
1 otherwise); afterwards the signed checkpoint's size must equal registrations plus
attestations, and ``sqm registry fsck`` must find the log intact. The workers' background
sweeps (``SQM_REGISTRY_INTEGRATE_EVERY``, 1 s) index the entries for search off the
submitters' time, on spare CPU while the index trails the log by at most ``--index-trail``
entries (the registry's ``SQM_REGISTRY_INDEX_TRAIL``, 5,000 by default) and at normal priority
beyond: the run also waits until the index holds every entry and reports the rate including
that wait (indexed/s).

The floor (``compute``, run last by default): the same gunicorn, the same workers and clients,
serving ``compute_server.py``, an app that does for each request only the ceiling's work (and
the subject check) and stores nothing; ``compute-flask`` is that app in Flask. What it serves
is the most any registry under this gunicorn configuration could ingest on this machine; each
backend is printed against it too.

Target (the registry ingest issue): sustained ingest >= 0.5 of the compute ceiling, printed
against the one-process ceiling and against it scaled by the cores the workers can use, each
with its own verdict.

Where the time went: per attestation, the CPU each kind of process used while the clients
submitted (read from ``/proc``: the server's workers and their indexer children, every
PostgreSQL server process, the client processes), next to the ceiling's own share, and how
busy that kept the cores; and how the clients' keep-alive connections fell to the workers
(gunicorn gives a connection to whichever worker accepts it first, and a 6-to-2 split leaves
one worker's threads queueing while the other idles: the largest cause of the spread between
runs).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import http.client
import json
import math
import multiprocessing
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from stdnum.iso7064 import mod_97_10

from sqm.trust import bundle, dsse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import harness  # noqa: E402
from harness import (  # noqa: E402
    BIN,
    HOST,
    POSTGRES_ADMIN,
    REPO,
    connections_by_worker,
    postgres_database,
    server_cpu,
)
from ingest_compute import server_compute  # noqa: E402

ATTEST = "/api/v1/attestations"
HEADERS = {"Content-Type": "application/json"}
TARGET = 0.5


# --- preparation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Supplier:
    identity: str
    organization: dict[str, Any]
    key: Ed25519PrivateKey
    public: bytes

    @property
    def key_id(self) -> str:
        return bundle.key_id(self.public)

    def registration(self) -> dict[str, Any]:
        """The body of POST /api/v1/suppliers: identity, key and proof of possession."""
        proof = self.key.sign(bundle.registration_message(self.identity, self.public))
        return {
            "supplier": self.organization,
            "publicKey": base64.b64encode(self.public).decode(),
            "proofOfPossession": base64.b64encode(proof).decode(),
        }


def make_supplier(number: int) -> Supplier:
    base = f"529900SQMBENCH{number:04d}"  # LOU prefix, "00", 12 characters; then check digits
    code = base + mod_97_10.calc_check_digits(base)
    organization = {
        "name": f"Benchmark Zulieferer {number} GmbH",
        "identifiers": [{"scheme": "LEI", "code": code}],
        "country": "DE",
    }
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Supplier(f"LEI:{code}", organization, key, public)


def make_feed(
    records: int, seed: int, supplier: Supplier, issued: str, previous: dict[str, Any] | None
) -> Any:
    """A feed of ``records`` generated records with the declarations they name, as a supplier
    publishes it (the generator declares far more sites and products than a small feed uses)."""
    sys.path.insert(0, str(HERE))
    from generate_feed import lines

    declared: dict[str, dict[str, Any]] = {"sites": {}, "products": {}, "characteristics": {}}
    found: dict[str, list[Any]] = {}
    header: dict[str, Any] = {}
    for line in lines(records, seed=seed):
        [(section, item)] = line.items()
        if section == "header":
            header = item
        elif section in declared:
            declared[section][item["id"]] = item
        else:
            found.setdefault(section, []).append(item)
    items = [item for section in found.values() for item in section]
    characteristics = {i["characteristic"] for i in items if "characteristic" in i}
    products = {i["product"] for i in items if "product" in i}
    products |= {declared["characteristics"][c]["product"] for c in characteristics}
    sites = {i["site"] for i in items if "site" in i}
    for product in products:
        sites.update(declared["products"][product]["manufactured_at"])
    header.update(
        feed_id=f"urn:uuid:{uuid.uuid4()}",
        supplier=supplier.organization,
        issued_at=issued,
        sequence=0 if previous is None else previous["sequence"] + 1,
    )
    if previous is not None:
        header["previous_feed"] = previous
    return {
        "header": header,
        "sites": [declared["sites"][s] for s in sorted(sites)],
        "products": [declared["products"][p] for p in sorted(products)],
        "characteristics": [declared["characteristics"][c] for c in sorted(characteristics)],
        **found,
    }


@dataclass
class Prepared:
    suppliers: list[Supplier]
    bodies: list[bytes]  # the request bodies, in submission order
    signers: list[int]  # the supplier of each body
    feed_bytes: float  # mean JSON size of a feed


def prepare(attestations: int, supplier_count: int, records: int) -> Prepared:
    suppliers = [make_supplier(n) for n in range(supplier_count)]
    issued = datetime.now(UTC).isoformat()
    bodies, signers = [], []
    feed_bytes = 0
    previous: dict[int, dict[str, Any]] = {}  # each supplier's feeds form a chain from 0
    for number in range(attestations):
        owner = number % supplier_count
        supplier = suppliers[owner]
        feed = make_feed(records, number, supplier, issued, previous.get(owner))
        statement = bundle.statement(feed)
        previous[owner] = {
            "feed_id": feed["header"]["feed_id"],
            "sequence": feed["header"]["sequence"],
            "sha256": statement["subject"][0]["digest"]["sha256"],
        }
        payload = json.dumps(statement).encode()
        feed_bytes += len(json.dumps(feed))
        envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, supplier.key, supplier.key_id)
        bodies.append(json.dumps(envelope.to_json()).encode())
        signers.append(owner)
    return Prepared(suppliers, bodies, signers, feed_bytes / attestations)


# --- the compute ceiling -------------------------------------------------------------------------


@dataclass
class Ceiling:
    rate: float  # attestations/s in one process
    decode_ms: float
    verify_ms: float
    validate_ms: float
    subject_ms: float  # the statement's subject digest check: computed by the server too


def public_keys(prepared: Prepared) -> dict[str, Ed25519PublicKey]:
    """The suppliers' public keys by key id, as the registry looks a signature's key up."""
    return {s.key_id: Ed25519PublicKey.from_public_bytes(s.public) for s in prepared.suppliers}


def measure_ceiling(prepared: Prepared, sample: int | None = None) -> Ceiling:
    """Run the server's per-attestation compute over every envelope (or ``sample`` of them,
    evenly spaced); abort on any error."""
    now = datetime.now(UTC)
    keys = public_keys(prepared)
    bodies = prepared.bodies
    if sample is not None and len(bodies) > sample:
        bodies = bodies[:: math.ceil(len(bodies) / sample)]
    for body in bodies[:20]:  # warm-up: schema compilation, first imports
        server_compute(body, keys, now)
    # As the registry's workers do once started (registry/wsgi.py): what lives on is frozen.
    gc.collect()
    gc.freeze()
    totals = [0.0] * 4
    for number, body in enumerate(bodies):
        stages, errors = server_compute(body, keys, now)
        if errors:
            raise SystemExit(
                f"ABORT: prepared feed {number} has {len(errors)} validation errors, "
                f"the benchmark measures accepted feeds only: {errors[:3]}"
            )
        totals = [t + s for t, s in zip(totals, stages, strict=True)]
    count = len(bodies)
    decode, verify, check, subject = (1000 * t / count for t in totals)
    return Ceiling(1000 / (decode + verify + check), decode, verify, check, subject)


# --- the server ----------------------------------------------------------------------------------


def initialise(data: Path, database: str | None) -> None:
    """Create the registry's keys and tables once, before the workers start: workers that boot
    together would otherwise each try to create them."""
    from sqm.registry.config import RegistryConfig
    from sqm.registry.db import make_engine
    from sqm.registry.secrets import load_or_create

    config = RegistryConfig(data_dir=data, database_url=database)
    load_or_create(config.data_dir / "keys", config.origin)
    make_engine(config.url).dispose()


@contextlib.contextmanager
def gunicorn(
    data: Path,
    database: str | None,
    workers: int,
    threads: int = 1,
    index_trail: int | None = None,
    balanced: bool = True,
    compute: str | None = None,
    compute_keys: dict[str, Ed25519PublicKey] | None = None,
) -> Iterator[tuple[int, Path]]:
    """The registry over ``data`` (and ``database``) under gunicorn (``harness.gunicorn``),
    its keys and tables made first; yields the port and its log file. ``index_trail``: the
    registry's ``SQM_REGISTRY_INDEX_TRAIL`` (None: its default). With ``compute`` (an app of
    ``COMPUTE_APPS``) and ``compute_keys``, the same gunicorn serves that compute-only app
    with those suppliers' keys instead of the registry."""
    app = "sqm.registry.wsgi:app"
    if compute is not None and compute_keys is not None:
        app = COMPUTE_APPS[compute]
        keys = data / "compute-keys.json"
        raw = {k: v.public_bytes(Encoding.Raw, PublicFormat.Raw) for k, v in compute_keys.items()}
        keys.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in raw.items()}))
        settings = {"SQM_BENCH_KEYS": str(keys)}
    else:
        initialise(data, database)
        settings = {"SQM_REGISTRY_DATA": str(data)}
        if database:
            settings["SQM_REGISTRY_DATABASE"] = database
        if index_trail is not None:
            settings["SQM_REGISTRY_INDEX_TRAIL"] = str(index_trail)
    options = []
    if threads > 1:  # threaded workers: more requests in flight, larger integration batches
        kind = BALANCED_WORKER if balanced else "gthread"
        options = ["--worker-class", kind, "--threads", str(threads)]
    with harness.gunicorn(data, settings, workers, options, 120, app) as served:
        yield served


BALANCED_WORKER = "sqm.registry.balanced_worker.BalancedThreadWorker"
# The floor: the same gunicorn serving only the ceiling's work (benchmarks/compute_server.py),
# as a bare WSGI app, and (on request) as a Flask app, as the registry is one.
COMPUTE = "compute"
COMPUTE_APPS = {COMPUTE: "compute_server:app", "compute-flask": "compute_server:flask_app"}


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        connection.request(method, path, body, HEADERS)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- the clients ---------------------------------------------------------------------------------


def client(port: int, bodies: list[bytes], barrier: Any, results: Any) -> None:
    """POST each body in turn over one keep-alive connection (http.client reconnects when the
    server closes it); report start, end, every latency and every status."""
    connection = http.client.HTTPConnection(HOST, port, timeout=300)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    samples: list[str] = []
    barrier.wait(timeout=120)
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across the client processes
    for body in bodies:
        sent = time.perf_counter()
        try:
            connection.request("POST", ATTEST, body, HEADERS)
            response = connection.getresponse()
            status, answer = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            status, answer = 0, repr(exc).encode()
            connection.close()
        latencies.append(time.perf_counter() - sent)
        statuses[status] += 1
        if status != 201 and len(samples) < 5:
            samples.append(f"{status}: {answer[:300].decode(errors='replace')}")
    end = time.perf_counter()
    connection.close()
    results.put((start, end, latencies, dict(statuses), samples))


@dataclass
class Run:
    backend: str
    accepted: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    samples: list[str]
    log_size: int | None  # None: the compute-only app keeps no log
    fsck: str
    fsck_ok: bool
    server_errors: int
    index_lag: float | None  # seconds from the last answer until the index held every entry
    cpu: dict[str, float]  # CPU seconds while submitting: workers, indexer, database, clients
    split: list[int]  # the clients' connections held by each worker, 2 s into the run
    log_tail: str = ""  # the server log's end, kept when the index did not catch up
    # The one-process ceiling measured just before the run and just after it (attestations/s)
    ceilings: tuple[float, float] = (0.0, 0.0)

    @property
    def ceiling(self) -> float:
        """The one-process ceiling for this run: the mean of the two measured around it."""
        return sum(self.ceilings) / 2

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    @property
    def indexed_rate(self) -> float | None:
        """Attestations/s until they were also searchable (the background sweep indexes)."""
        if self.index_lag is None:
            return None
        return self.accepted / (self.seconds + self.index_lag)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def submit(port: int, prepared: Prepared, clients: int) -> tuple[float, list[Any]]:
    """Run the client processes (forked: they inherit the prepared bodies); wall seconds from
    the first client's start to the last client's end, and each client's report."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients)
    results = context.Queue()
    shares = [prepared.bodies[n::clients] for n in range(clients)]
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
                try:  # every client has exited: what they reported is already in the pipe
                    reports.append(results.get(timeout=5))
                except queue.Empty:
                    missing = len(processes) - len(reports)
                    raise SystemExit(
                        f"ABORT: {missing} client processes died without a report"
                    ) from None
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    seconds = max(r[1] for r in reports) - min(r[0] for r in reports)
    return seconds, reports


def run_fsck(data: Path, database: str | None) -> tuple[bool, str]:
    """``sqm registry fsck`` on the run's data: (intact, its summary line)."""
    command = [str(BIN / "sqm"), "registry", "fsck", "--data", str(data)]
    if database:
        command += ["--database", database]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines() or [f"exit {done.returncode}"]
    if done.returncode == 0:
        return True, lines[-1]
    return False, " | ".join(line.strip() for line in lines[-6:])


def server_errors(log_path: Path) -> int:
    """Tracebacks and worker timeouts in the gunicorn log."""
    log = log_path.read_text(errors="replace")
    return log.count("Traceback") + log.count("WORKER TIMEOUT")


def wait_for_index(
    data: Path, database: str | None, size: int, limit: float = 600, stall: float = 60
) -> float | None:
    """Seconds until the registry's search index holds all ``size`` log entries (the
    workers' background sweeps index in batches, off the submitters' time); None if not
    within ``limit``, or when the index stops moving for ``stall`` seconds (an indexer that
    fails on every try: the server log's tracebacks are counted and shown by the run)."""
    from sqm.registry.config import RegistryConfig
    from sqm.registry.db import make_engine
    from sqm.registry.indexer import Indexer

    engine = make_engine(RegistryConfig(data_dir=data, database_url=database).url)
    indexer = Indexer(engine)
    started = moved = time.perf_counter()
    last = indexer.position()
    try:
        while time.perf_counter() - started < limit:
            position = indexer.position()
            if position >= size - 1:
                return time.perf_counter() - started
            if position != last:
                last, moved = position, time.perf_counter()
            elif time.perf_counter() - moved > stall:
                print(f"  the search index stopped at entry {position} of {size} for {stall:.0f} s")
                return None
            time.sleep(0.05)
        return None
    finally:
        engine.dispose()


def run_backend(backend: str, prepared: Prepared, args: argparse.Namespace) -> Run:
    kind = "sync"
    if args.threads > 1:
        worker = "BalancedThreadWorker" if args.balanced else "gthread"
        kind = f"{worker}, {args.threads} threads each"
    what = "the compute-only app (no storage)" if backend in COMPUTE_APPS else "the registry"
    print(f"{backend}: gunicorn with {args.workers} workers ({kind}) serving {what}")
    with (
        tempfile.TemporaryDirectory(prefix="sqm_bench_") as folder,
        contextlib.ExitStack() as stack,
    ):
        data = Path(folder)
        database = None
        if backend == "postgresql":
            database = stack.enter_context(postgres_database(args.postgres))
        compute_keys = public_keys(prepared) if backend in COMPUTE_APPS else None
        served = gunicorn(
            data, database, args.workers, args.threads, args.index_trail, args.balanced,
            backend if backend in COMPUTE_APPS else None, compute_keys,
        )  # fmt: skip
        with served as (port, log_path):
            for supplier in prepared.suppliers if backend not in COMPUTE_APPS else []:
                body = json.dumps(supplier.registration()).encode()
                status, answer = request(port, "POST", "/api/v1/suppliers", body)
                if status != 201:
                    raise SystemExit(f"registering {supplier.identity} failed: {status} {answer!r}")
            registered = (
                f"{len(prepared.suppliers)} suppliers registered over HTTP"
                if backend not in COMPUTE_APPS
                else f"{len(prepared.suppliers)} suppliers' keys given to the app"
            )
            print(
                f"  {registered}; {args.clients} client processes submit "
                f"{len(prepared.bodies):,} attestations"
            )
            # Where the machine's time went while the clients submitted: the server's
            # processes by role, and the client processes (children of this one, reaped).
            server_before = server_cpu(data)
            clients_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            # How the clients' keep-alive connections fell to the workers, once all connected:
            # runs differ most by this (one worker serving 6 of 8 leaves the other idle).
            split: list[list[int]] = []
            sampler = threading.Timer(2.0, lambda: split.append(connections_by_worker(data, port)))
            sampler.start()
            seconds, reports = submit(port, prepared, args.clients)
            sampler.cancel()
            server_after = server_cpu(data)
            clients_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = {role: server_after[role] - server_before[role] for role in server_after}
            cpu["clients"] = (clients_after.ru_utime + clients_after.ru_stime) - (
                clients_before.ru_utime + clients_before.ru_stime
            )
            log_size, index_lag = None, None
            if backend not in COMPUTE_APPS:
                status, note = request(port, "GET", "/api/v1/log/checkpoint")
                log_size = int(note.decode().split("\n")[1]) if status == 200 else -1
                index_lag = wait_for_index(data, database, log_size)
            # The server log goes with the scratch folder: keep its end when something failed.
            log_tail = ""
            if backend not in COMPUTE_APPS and index_lag is None:
                log_tail = log_path.read_text(errors="replace")[-2000:]
        intact, summary = True, "skipped"
        if args.fsck and backend not in COMPUTE_APPS:
            intact, summary = run_fsck(data, database)
        statuses: Counter[int] = Counter()
        for report in reports:
            statuses.update(report[3])
        return Run(
            backend=backend,
            accepted=statuses.get(201, 0),
            seconds=seconds,
            latencies=[latency for report in reports for latency in report[2]],
            statuses=statuses,
            samples=[sample for report in reports for sample in report[4]],
            log_size=log_size,
            fsck=summary,
            fsck_ok=intact,
            server_errors=server_errors(log_path),
            index_lag=index_lag,
            cpu=cpu,
            split=split[0] if split else [],
            log_tail=log_tail,
        )


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attestations", type=int, default=2000)
    parser.add_argument(
        "--clients",
        type=int,
        default=None,
        help="concurrent client processes (default: workers x threads, a keep-alive "
        "connection per server thread: fewer left PostgreSQL's cores idle while each group "
        "commit waited for the server's WAL flush)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--threads", type=int, default=6, help="threads per worker (gthread when above 1)"
    )
    parser.add_argument(
        "--backends",
        default=f"sqlite,postgresql,{COMPUTE}",
        help=f"any of sqlite, postgresql, {COMPUTE} (the same gunicorn serving only the "
        "ceiling's work, storing nothing: what no registry under it can exceed) and "
        "compute-flask (that work in a Flask app)",
    )
    parser.add_argument("--records", type=int, default=20, help="records per feed")
    parser.add_argument("--suppliers", type=int, default=64)
    parser.add_argument(
        "--postgres", default=POSTGRES_ADMIN, help="an admin URL to create the run's database"
    )
    parser.add_argument(
        "--index-trail",
        type=int,
        default=None,
        help="entries the search index may trail by while it indexes on spare CPU "
        "(SQM_REGISTRY_INDEX_TRAIL; default: the registry's)",
    )
    parser.add_argument(
        "--plain-gthread",
        dest="balanced",
        action="store_false",
        help="gunicorn's own gthread worker instead of the registry's BalancedThreadWorker",
    )
    parser.add_argument("--no-fsck", dest="fsck", action="store_false")
    args = parser.parse_args()
    if args.clients is None:
        args.clients = args.workers * args.threads
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "postgresql", *COMPUTE_APPS}:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if not 1 <= args.suppliers <= 9999 or args.attestations < 1 or args.clients < 1:
        parser.error("need 1-9999 suppliers, at least one attestation and one client")
    # SIGTERM unwinds like Ctrl-C, so that servers stop and databases are dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.perf_counter()
    prepared = prepare(args.attestations, args.suppliers, args.records)
    envelope = sum(map(len, prepared.bodies)) / len(prepared.bodies)
    print(
        f"prepared {args.attestations:,} signed attestations of {args.records}-record feeds from "
        f"{args.suppliers} suppliers in {time.perf_counter() - started:.1f} s "
        f"(feed {prepared.feed_bytes / 1000:.1f} kB, request body {envelope / 1000:.1f} kB)"
    )
    ceiling = measure_ceiling(prepared)
    cores = min(args.workers, usable_cores())
    scaled = ceiling.rate * cores
    print(
        f"every feed validates without errors; compute ceiling in one process: "
        f"{ceiling.rate:,.0f} attestations/s = decode {ceiling.decode_ms:.3f} ms + DSSE verify "
        f"{ceiling.verify_ms:.3f} ms + validate {ceiling.validate_ms:.3f} ms per attestation"
    )
    print(
        f"  scaled by min(workers {args.workers}, usable cores {usable_cores()}) = {cores}: "
        f"{scaled:,.0f} attestations/s (not in the ceiling, the server also checks the "
        f"statement's subject digest: {ceiling.subject_ms:.3f} ms)"
    )

    # The machine's speed may drift between the ceiling's measurement and a run that takes a
    # minute (seen here: 406 to 616 attestations/s within ten minutes, same code and inputs),
    # so each run is set against the ceiling measured just before it and just after it.
    runs = []
    before = ceiling.rate
    for backend in backends:
        run = run_backend(backend, prepared, args)
        after = measure_ceiling(prepared, sample=1000).rate
        run.ceilings = (before, after)
        runs.append(run)
        before = after

    expected = args.suppliers + args.attestations
    print()
    print(
        f"{'backend':13} {'attest.':>7} {'seconds':>8} {'att/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'ceiling':>8} {'ratio':>6} {'ratio 1 proc':>12} {'indexed/s':>9}"
    )
    failed = False
    for run in runs:
        indexed = "-" if run.backend in COMPUTE_APPS else f"{run.indexed_rate or 0:.1f}"
        print(
            f"{run.backend:13} {run.accepted:7,} {run.seconds:8.2f} {run.rate:7.1f} "
            f"{run.percentile(0.5):7.1f} {run.percentile(0.99):7.1f} {run.ceiling * cores:8.0f} "
            f"{run.rate / (run.ceiling * cores):6.3f} {run.rate / run.ceiling:12.3f} "
            f"{indexed:>9}"
        )
    print(
        f"ceiling = the one-process compute ceiling (the mean of its measurements just before "
        f"and just after the run) x {cores} usable core{'s' if cores > 1 else ''}; ratio = "
        f"att/s / ceiling (target >= {TARGET}); ratio 1 proc = att/s / the one-process ceiling; "
        "indexed/s = attestations / (seconds + time until the search index held them all)"
    )
    print()
    floor = next((run for run in runs if run.backend == COMPUTE), None)
    for run in runs:
        problems = []
        others = {s: n for s, n in run.statuses.items() if s != 201}
        if others:
            problems.append(f"answers other than 201: {others}; e.g. {run.samples[:3]}")
        if run.backend not in COMPUTE_APPS:
            if run.log_size != expected:
                problems.append(f"checkpoint size {run.log_size}, expected {expected}")
            if not run.fsck_ok:
                problems.append(f"fsck: {run.fsck}")
            if run.index_lag is None:
                problems.append(
                    "the search index did not catch up with the log; the server log ends:\n"
                    f"{run.log_tail}"
                )
        failed = failed or bool(problems)
        scaled = run.ceiling * cores
        unit = "cores" if cores > 1 else "core"

        def verdict(ratio: float) -> str:
            return "MET" if ratio >= TARGET else "NOT MET"

        latency = (
            f"mean latency {1000 * sum(run.latencies) / len(run.latencies):.1f} ms; one-process "
            f"ceiling {run.ceilings[0]:,.0f}/s before the run, {run.ceilings[1]:,.0f}/s after it"
        )
        if run.backend in COMPUTE_APPS:
            # Not the registry, so no verdict: the most that any app doing the ceiling's
            # work under this gunicorn configuration serves on this machine.
            alone = "alone" if run.backend == COMPUTE else "alone in a Flask app"
            print(
                f"{run.backend} (the floor: this gunicorn serving the ceiling's work {alone}, "
                f"nothing stored): served / ceiling(1 process) = {run.rate / run.ceiling:.3f}, "
                f"served / ceiling({cores} {unit}) = {run.rate / scaled:.3f}; {latency}"
            )
            print(
                f"  {run.accepted:,}/{len(run.latencies):,} answered 201; tracebacks in the "
                f"server log: {run.server_errors}"
            )
        else:
            # The ceiling is an in-process cost, which reads as one process's rate;
            # the stricter reading scales it by the cores the workers use. Both verdicts,
            # each by its ratio, so that neither is read for the other.
            print(
                f"{run.backend}: ingest / ceiling(1 process) = {run.rate / run.ceiling:.3f} "
                f"(target >= {TARGET}: {verdict(run.rate / run.ceiling)}), "
                f"ingest / ceiling({cores} {unit}) = {run.rate / scaled:.3f} "
                f"(target >= {TARGET}: {verdict(run.rate / scaled)}); {latency}"
            )
            size = run.log_size or 0
            print(
                f"  {run.accepted:,}/{len(run.latencies):,} answered 201; checkpoint size "
                f"{size:,} = {args.suppliers} registrations + {args.attestations:,} "
                f"attestations: {'yes' if size == expected else 'NO'}; fsck: {run.fsck}; "
                f"tracebacks in the server log: {run.server_errors}; the search index held "
                f"every entry {run.index_lag or 0:.1f} s after the last answer"
            )
            if floor is not None and floor.rate > 0:
                print(
                    f"  against the floor ({COMPUTE}, the same gunicorn doing only the "
                    f"ceiling's work): {run.rate / floor.rate:.3f} of its rate"
                )
        per = {role: 1000 * used / max(run.accepted, 1) for role, used in run.cpu.items()}
        busy = sum(run.cpu.values()) / (run.seconds * usable_cores())
        database = (
            f", database server {per['database']:.2f} ms" if run.backend == "postgresql" else ""
        )
        indexer = f", indexer {per['indexer']:.2f} ms" if run.backend not in COMPUTE_APPS else ""
        print(
            f"  CPU per attestation while submitting: workers {per['workers']:.2f} ms"
            f"{indexer}{database}, clients {per['clients']:.2f} ms (the compute ceiling's "
            f"share: {1000 / run.ceiling:.2f} ms); these kept {busy:.0%} of "
            f"{usable_cores()} cores busy"
        )
        shares = " / ".join(map(str, run.split)) or "not read"
        print(f"  client connections held by each worker: {shares}")
        for problem in problems:
            print(f"  FAILED: {problem}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
