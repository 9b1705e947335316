"""Background upkeep of a registry process: a sweep that integrates entries whose request died
between sequencing and integration (a killed worker, a dropped connection), so that no
sequenced entry waits for the next submission to reach the tree: every entry is in a signed
checkpoint within about ``every`` seconds of being sequenced; and a low-priority child process
that brings the search index up to the log."""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from sqm.registry.errors import RegistryError
from sqm.registry.log import TransparencyLog

logger = logging.getLogger(__name__)
T = TypeVar("T")


class BackgroundIndexer:
    """Keeps the search index up to the log from a child process, at a lower CPU priority.

    Why a process: indexing is CPU-bound Python. In a thread of a gunicorn worker it held the
    interpreter lock while that worker's submissions waited for it inside the log's write
    lock, which cut ingest from 213 to 75 attestations/s (SQLite, 2 workers). Every worker
    has one; one at a time indexes (the others find the indexer lock taken and wait for the
    next round), and a child whose worker died exits.
    """

    def __init__(self, database_url: str, every: float, trail: int = 5_000) -> None:
        """``trail``: how many log entries the index may trail by before its work stops
        waiting for spare CPU (:class:`SpareCpu`)."""
        self.database_url = database_url
        self.every = every
        self.trail = trail
        self._process: Any = None

    def ensure(self) -> None:
        """Start the child, or start it again when it died."""
        if self._process is not None and self._process.is_alive():
            return
        context = multiprocessing.get_context("spawn")  # no inherited threads or connections
        self._process = context.Process(
            target=_follow,
            args=(self.database_url, self.every, os.getpid(), self.trail),
            name="sqm-indexer",
            daemon=True,
        )
        self._process.start()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(timeout=10)
            self._process = None


def _follower_batch(dialect: str) -> int:
    """Entries the background indexer stores per write transaction.

    On SQLite each store holds the database's one write lock, which submissions wait for:
    at 64 entries a hold lasted some 60 ms, long enough for every submission thread of both
    workers to queue behind it with the cores idle. At 8, in four alternating runs of the
    ingest benchmark (4,000 attestations), the p99 fell from 151-166 to 78-86 ms and ingest
    rose from 170-206 to 214-256 attestations/s, with the index as fresh (it held every entry
    at 198-199 attestations/s of the run against 170-198). That was measured while the index
    shared the log's file; with a file of its own the small batch keeps each store, at the
    lowest priority, short. PostgreSQL's index writes take no lock that submissions wait
    for, and there a larger batch costs fewer round trips."""
    return 8 if dialect == "sqlite" else 64


def _follow(database_url: str, every: float, parent: int, trail: int) -> None:
    """The child: index what the log holds beyond the index, every ``every`` seconds."""
    from sqm.registry.db import index_file, make_engine
    from sqm.registry.indexer import Indexer

    engine = make_engine(database_url)
    # Storing at the lowest priority is safe only where it holds no lock that submissions
    # wait for: on SQLite, where the index has a file of its own; on PostgreSQL, whose index
    # writes lock only index rows. In a SQLite database shared with the log, a starved store
    # would hold the log's one write lock (priority inversion: measured, a SCHED_IDLE holder
    # made a waiter's p99 357 ms on busy cores, against 10 ms at nice 0).
    apart = engine.dialect.name == "postgresql" or index_file(engine) is not None
    # A PostgreSQL server on these cores does its part of each store at its own priority.
    meter = BusyCores() if _server_shares_cores(engine.url) else None
    priority = SpareCpu(trail, store_idle=apart, server_cores=meter)
    indexer = Indexer(engine, batch=_follower_batch(engine.dialect.name), priority=priority)
    while os.getppid() == parent:
        try:
            indexer.catch_up(wait=False)
        except (SQLAlchemyError, RegistryError):
            logger.exception("indexing failed; retrying in %ss", every)
        time.sleep(every)


class SpareCpu:
    """Indexing on the CPU time that submissions leave, while the index trails the log by at
    most ``trail`` entries; beyond that, at normal priority, so that a sustained stream of
    submissions cannot leave search ever further behind.

    Why: indexing costs about 0.6 of a submission's own checks in CPU, and on two cores every
    core-millisecond it takes is one that submissions wait for. Measured on SQLite with the
    index in its own file (ingest benchmark, 4,000 attestations, alternating runs): storing
    at the lowest priority too raised ingest from 0.38-0.47 of the one-process ceiling to
    0.51-0.57, the index then catching up within 7 s of the last answer. Within the trail,
    rows are computed at the lowest priority always (the calling thread only waits for them);
    ``store_idle`` says whether they may be stored there too (see :func:`_follow`). A trail
    of 0 keeps everything at normal priority.

    ``server_cores``: a database server on this machine stores the rows in a process of its
    own, at normal priority whatever the indexer's: within the trail, a store then waits
    until that meter shows spare CPU (measured, :class:`BusyCores`), for at most
    ``patience`` seconds.
    """

    def __init__(
        self,
        trail: int,
        store_idle: bool,
        server_cores: BusyCores | None = None,
        patience: float = 10.0,
    ) -> None:
        self.trail = trail
        self.store_idle = store_idle
        self.server_cores = server_cores
        self.patience = patience
        self._idle = IdleThread()
        self._hurried = False

    def run(
        self,
        work: Callable[[], T],
        behind: int,
        storing: bool,
        recount: Callable[[], int] | None = None,
    ) -> T:
        """Run ``work`` at the lowest priority, or here when the index trails too far (or
        when it stores and ``store_idle`` is False). A store first waits for spare CPU when
        the database server shares the cores, counting again (``recount``) how far the index
        trails while it waits; without ``recount`` it does not wait."""
        if self.trail == 0:  # no trail allowed: always at normal priority, nothing to log
            return work()
        hurried = self._hurry(behind)
        if storing and self.server_cores is not None and recount is not None:
            # At most ``patience`` seconds a batch: under load that is not submissions (a
            # build on a shared host) the index still moves, a batch at a time.
            deadline = time.monotonic() + self.patience
            while not hurried and time.monotonic() < deadline and self.server_cores.busy():
                hurried = self._hurry(recount())
        if hurried or (storing and not self.store_idle):
            return work()
        return self._idle(work)

    def _hurry(self, behind: int) -> bool:
        """Whether the index trails too far, ``behind`` entries behind the log."""
        # Hurried beyond the trail, calm again within half of it: an index that hovers about
        # the trail under a steady stream does not switch (and log) batch by batch.
        hurried = behind > (self.trail // 2 if self._hurried else self.trail)
        if hurried != self._hurried:
            self._hurried = hurried
            if hurried:
                logger.warning(
                    "the search index trails the log by %s entries (more than %s): indexing "
                    "at normal priority until it catches up", behind, self.trail,
                )  # fmt: skip
            else:
                logger.info(
                    "the search index is back within %s entries of the log", self.trail // 2
                )
        return hurried

    def close(self) -> None:
        self._idle.close()


class BusyCores:
    """Whether other processes keep this machine's cores busy: the CPU time of all its cores
    (``/proc/stat``), less this process's own, over the time since the last look.

    Why: a PostgreSQL server stores the index's rows in its own process, at normal priority,
    whatever the indexer's; on the cores the workers use, that took about 1 ms of CPU an
    attestation from submissions (ingest benchmark, 4,000 attestations: 0.41-0.45 of the
    one-process ceiling with the index stored at once, 0.46-0.51 with no index at all). The
    cores count as busy while other processes keep more than ``limit`` of them so: during
    those bursts, without the index, the machine was 0.75-0.90 busy in each half second, and
    0.1-0.3 while the index caught up afterwards. Linux only; elsewhere the cores always
    look spare. ``/proc/stat`` counts the whole host's cores: in a container limited to a
    share of them (a cgroup quota) it tells how busy the host is, not that share.
    """

    def __init__(
        self,
        limit: float = 0.7,
        window: float = 0.25,
        stale: float = 2.0,
        read: Callable[[], tuple[float, float, float]] | None = None,
    ) -> None:
        """``window``: the shortest look (a look sooner waits for the rest of it); ``stale``:
        a look that long after the last one starts afresh, so that a verdict reflects now.
        ``read``: (busy seconds, all seconds of the cores, this process's seconds), by
        default from ``/proc``."""
        self.limit = limit
        self.window = window
        self.stale = stale
        self._read = read or _machine_seconds
        self._last: tuple[float, float, float, float] | None = None  # (when, *read)
        self._busy = True  # the last verdict

    def busy(self) -> bool:
        """Whether other processes used more than ``limit`` of the cores since the last
        look. A look within ``window`` seconds of the last one waits for the rest of it,
        unless the last found the cores spare (so an index catching up on idle cores does
        not wait batch by batch)."""
        try:
            if self._last is None or time.monotonic() - self._last[0] > self.stale:
                self._last, self._busy = (time.monotonic(), *self._read()), True
            waited = time.monotonic() - self._last[0]
            if waited < self.window:
                if not self._busy:
                    return False
                time.sleep(self.window - waited)
            now = (time.monotonic(), *self._read())
        except OSError:  # no /proc: nothing to go by
            return False
        _, busy_before, all_before, own_before = self._last
        _, busy_now, all_now, own_now = now
        self._last = now
        elapsed = all_now - all_before
        others = (busy_now - busy_before - (own_now - own_before)) / elapsed if elapsed > 0 else 0
        self._busy = others > self.limit
        return self._busy


def _machine_seconds() -> tuple[float, float, float]:
    """(busy, all) CPU seconds of the machine's cores since boot, and this process's own."""
    with Path("/proc/stat").open(encoding="ascii") as stat:
        # user nice system idle iowait irq softirq steal (proc(5)), in clock ticks
        ticks = [int(field) for field in stat.readline().split()[1:9]]
    per_second = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]
    own = os.times()
    return (sum(ticks) - idle) / per_second, sum(ticks) / per_second, own.user + own.system


def _server_shares_cores(url: URL) -> bool:
    """Whether ``url`` names a PostgreSQL server on this machine (a loopback address or a
    Unix socket): one whose work for the index competes with submissions for the cores.
    Without a host in the URL, libpq's ``PGHOST`` (else its default, a local socket)."""
    if url.get_backend_name() != "postgresql":
        return False
    given = url.query.get("hostaddr") or url.query.get("host") or url.host
    hosts = [given] if isinstance(given, str) else list(given or ())
    if not hosts:
        hosts = os.environ.get("PGHOST", "").split(",")
    return all(_local_host(host) for host in hosts)  # several hosts: only when all are


def _local_host(host: str) -> bool:
    if not host or host.startswith("/"):  # libpq's default, or a socket directory
        return True
    if not host.startswith("[") and host.count(":") == 1:
        host = host.split(":")[0]  # SQLAlchemy's host:port in the query string
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a name: its address is not looked up here
        return False


def _lowest_priority() -> None:
    """Submissions and reads first: the calling thread (Linux schedules threads, not
    processes) runs only on CPU time they leave idle.

    Why SCHED_IDLE rather than a nice value: even at nice 10 the scheduler gave the indexer
    about a quarter of a core while gunicorn workers ingested (the 0.44 of 1.7 cores busy),
    time the workers' submissions then waited for. Computing rows under SCHED_IDLE, the index
    still stayed within a few seconds of the log during bursts of 2,000-4,000 submissions
    (2 workers), since the workers leave gaps while they wait for the lock and for fsync."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)


class IdleThread:
    """Runs work in one thread of the lowest CPU priority (:func:`_lowest_priority`) while
    the caller waits for its result."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, "sqm-idle", initializer=_lowest_priority)

    def __call__(self, work: Callable[[], T]) -> T:
        return self._pool.submit(work).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class Integrator:
    """Runs :meth:`TransparencyLog.integrate` every ``every`` seconds while entries wait, and
    keeps a :class:`BackgroundIndexer` running when given one."""

    def __init__(
        self, log: TransparencyLog, every: float, indexing: BackgroundIndexer | None = None
    ) -> None:
        if every <= 0:
            raise RegistryError(f"the integration interval must be positive, got {every}")
        self.log = log
        self.every = every
        self.indexing = indexing
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqm-integrator", daemon=True)

    def start(self) -> None:
        if self.indexing is not None:
            self.indexing.ensure()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10 * self.every)
        if self.indexing is not None:
            self.indexing.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                while self.log.waiting() and not self._stop.is_set():
                    self.log.integrate()
                if self.indexing is not None and not self._stop.is_set():
                    self.indexing.ensure()
            except (SQLAlchemyError, RegistryError):
                # The database may be briefly unavailable; the next sweep tries again.
                logger.exception("background integration failed; retrying in %ss", self.every)
