"""Entries whose request died before integrating them still reach the tree: at start-up, and
within about one interval by the background sweep."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.errors import RegistryError
from sqm.registry.indexer import Indexer
from sqm.registry.integrator import BusyCores, SpareCpu, _server_shares_cores
from sqm.registry.seed import seed
from tests.conftest import EXAMPLES

T = TypeVar("T")


def _config(engine: Engine, tmp_path: Path, every: float | None) -> RegistryConfig:
    url = engine.url.render_as_string(hide_password=False)
    return RegistryConfig(data_dir=tmp_path / "data", database_url=url, integrate_every=every)


def test_start_up_integrates_what_a_crash_left_sequenced(engine: Engine, tmp_path: Path) -> None:
    log = create_app(_config(engine, tmp_path, None)).extensions["sqm"]["log"]
    log.sequence(b"acknowledged, then the worker died")
    assert log.waiting() == 1 and log.size() == 0
    restarted = create_app(_config(engine, tmp_path, None)).extensions["sqm"]["log"]
    assert restarted.waiting() == 0 and restarted.size() == 1
    assert restarted.leaf(0) == b"acknowledged, then the worker died"
    assert restarted.fsck() == []


def test_the_sweep_integrates_orphans_within_its_interval(engine: Engine, tmp_path: Path) -> None:
    app = create_app(_config(engine, tmp_path, 0.1))
    log, integrator = app.extensions["sqm"]["log"], app.extensions["sqm"]["integrator"]
    try:
        log.sequence(b"orphan 1")
        log.sequence(b"orphan 2")
        deadline = time.monotonic() + 10
        while log.size() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.size() == 2 and log.waiting() == 0
        latest = log.latest()
        assert latest is not None and latest.checkpoint.size == 2
    finally:
        integrator.stop()
    assert log.fsck() == []


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_bad_interval_is_refused_with_its_name(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQM_REGISTRY_INTEGRATE_EVERY", raw)
    with pytest.raises(RegistryError, match="SQM_REGISTRY_INTEGRATE_EVERY"):
        RegistryConfig.from_env()


@pytest.mark.parametrize(("raw", "expected"), [("off", None), ("0", None), ("2.5", 2.5)])
def test_the_interval_comes_from_the_environment(
    raw: str, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQM_REGISTRY_INTEGRATE_EVERY", raw)
    assert RegistryConfig.from_env().integrate_every == expected


def test_a_child_process_indexes_what_was_logged(engine: Engine, tmp_path: Path) -> None:
    # With a sweep, writes answer without indexing; the worker's indexer child catches up.
    app = create_app(_config(engine, tmp_path, 0.2))
    integrator = app.extensions["sqm"]["integrator"]
    try:
        logged = seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "keys")
        indexer, log = app.extensions["sqm"]["indexer"], app.extensions["sqm"]["log"]
        deadline = time.monotonic() + 60
        while indexer.position() < log.size() - 1:
            assert time.monotonic() < deadline, "the index never caught up"
            time.sleep(0.1)
        hits = app.test_client().get("/api/v1/search/suppliers").json["hits"]
        assert sorted(h["logIndex"] for h in hits) == sorted(e["logIndex"] for e in logged)
        assert indexer.check() == []
        child = integrator.indexing._process
        assert child.is_alive() and child.name == "sqm-indexer"
    finally:
        integrator.stop()
    assert not child.is_alive()


class _Recorded(SpareCpu):
    """SpareCpu that notes, for each piece of work, how far the index trailed, whether it
    stored, and the scheduling policy of the thread that ran it."""

    def __init__(self, trail: int, store_idle: bool, server_cores: BusyCores | None = None) -> None:
        super().__init__(trail, store_idle, server_cores)
        self.runs: list[tuple[int, bool, int]] = []

    def run(
        self,
        work: Callable[[], T],
        behind: int,
        storing: bool,
        recount: Callable[[], int] | None = None,
    ) -> T:
        def noted() -> T:
            self.runs.append((behind, storing, os.sched_getscheduler(0)))
            return work()

        return super().run(noted, behind, storing, recount)


def _indexed_with(engine: Engine, tmp_path: Path, priority: _Recorded) -> list[Any]:
    registry = create_app(_config(engine, tmp_path, None))
    logged = seed(registry.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "keys")
    indexer: Indexer = registry.extensions["sqm"]["indexer"]
    try:
        background = Indexer(indexer.engine, batch=1, priority=priority)
        assert background.rebuild() >= len(logged) > 1
        assert background.check() == []  # every row as the log yields it
    finally:
        priority.close()
    return logged


@pytest.mark.parametrize("store_idle", [True, False], ids=["stored-idle", "stored-normal"])
def test_index_rows_are_computed_at_idle_priority_while_the_index_trails_by_little(
    engine: Engine, tmp_path: Path, store_idle: bool
) -> None:
    priority = _Recorded(trail=1_000, store_idle=store_idle)
    _indexed_with(engine, tmp_path, priority)
    computed = {policy for _, storing, policy in priority.runs if not storing}
    stored = {policy for _, storing, policy in priority.runs if storing}
    assert computed == {os.SCHED_IDLE}
    assert stored == ({os.SCHED_IDLE} if store_idle else {os.sched_getscheduler(0)})
    assert os.sched_getscheduler(0) != os.SCHED_IDLE


def test_indexing_takes_normal_priority_while_the_index_trails_too_far(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    priority = _Recorded(trail=2, store_idle=True)
    with caplog.at_level(logging.INFO, logger="sqm.registry.integrator"):
        _indexed_with(engine, tmp_path, priority)
    behind = [trailing for trailing, storing, _ in priority.runs if storing]
    # One entry a batch: the first trailed by all the others, the last by none.
    assert behind == sorted(behind, reverse=True) and behind[-1] == 0 and behind[0] > 2
    # Beyond the trail (2) at normal priority, and so until back within half of it.
    for trailing, _, policy in priority.runs:
        assert (policy == os.SCHED_IDLE) == (trailing <= 1), (trailing, policy)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("trails the log by" in m and "normal priority" in m for m in messages) == 1
    assert sum("back within 1 entries of the log" in m for m in messages) == 1


def test_the_index_trail_setting_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQM_REGISTRY_INDEX_TRAIL", "250")
    assert RegistryConfig.from_env().index_trail == 250
    assert RegistryConfig().index_trail == 5_000
    for bad in ("-1", "lots", "2.5"):
        monkeypatch.setenv("SQM_REGISTRY_INDEX_TRAIL", bad)
        with pytest.raises(RegistryError, match="SQM_REGISTRY_INDEX_TRAIL"):
            RegistryConfig.from_env()


def test_a_trail_of_zero_keeps_indexing_at_normal_priority() -> None:
    priority = _Recorded(trail=0, store_idle=True)
    try:
        for behind in (5, 0):
            for storing in (False, True):
                priority.run(lambda: None, behind, storing)
    finally:
        priority.close()
    assert {policy for *_, policy in priority.runs} == {os.sched_getscheduler(0)}
    assert os.sched_getscheduler(0) != os.SCHED_IDLE


# --- spare CPU for a database server on the same cores ------------------------------------------


class _Readings:
    """/proc figures for BusyCores, as (busy, all, own) seconds: each look adds ``step``."""

    def __init__(self, steps: list[tuple[float, float, float]]) -> None:
        self.now = (0.0, 0.0, 0.0)
        self.steps = list(steps)
        self.looks = 0

    def __call__(self) -> tuple[float, float, float]:
        self.looks += 1
        if self.looks > 1 and self.steps:
            step = self.steps.pop(0)
            self.now = tuple(a + b for a, b in zip(self.now, step, strict=True))  # type: ignore[assignment]
        return self.now


def test_busy_cores_count_the_others_share_of_the_machine() -> None:
    # Two cores for a quarter second: 0.5 s of CPU in all. Busy beyond 0.7 of it only when
    # other processes used it: this process's own time does not count.
    looks = _Readings([(0.45, 0.5, 0.0), (0.30, 0.5, 0.0), (0.45, 0.5, 0.30), (0.5, 0.5, 0.0)])
    meter = BusyCores(limit=0.7, window=0.01, read=looks)
    verdicts = []
    for _ in range(4):
        verdicts.append(meter.busy())
        time.sleep(0.02)  # past the window: each verdict is a new look
    assert verdicts == [True, False, False, True]
    assert looks.looks == 5  # the reference, then one a verdict


def test_busy_cores_wait_out_a_window_only_after_a_busy_verdict() -> None:
    meter = BusyCores(limit=0.7, window=0.2, read=_Readings([(0.1, 0.5, 0.0), (0.5, 0.5, 0.0)]))
    started = time.monotonic()
    assert not meter.busy()  # the first look waits a whole window
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    assert not meter.busy()  # spare a moment ago: no wait, no new look
    assert time.monotonic() - started < 0.1
    time.sleep(0.2)
    assert meter.busy()  # a new look once the window passed
    started = time.monotonic()
    meter.busy()  # busy a moment ago: waits for the rest of the window before it looks
    assert time.monotonic() - started >= 0.15


def test_busy_cores_start_afresh_after_a_long_pause_and_without_proc() -> None:
    looks = _Readings([(0.5, 0.5, 0.0), (50.0, 100.0, 0.0), (0.5, 0.5, 0.0)])
    meter = BusyCores(limit=0.7, window=0.01, stale=0.05, read=looks)
    assert meter.busy()
    time.sleep(0.1)
    # A look after the pause measures from a new reference, not over the pause (which was
    # half idle): the cores are busy now.
    assert meter.busy()

    def unreadable() -> tuple[float, float, float]:
        raise FileNotFoundError("/proc/stat")

    assert not BusyCores(read=unreadable).busy()


def test_busy_cores_see_other_processes_spinning() -> None:
    meter = BusyCores()
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.3)
        assert meter.busy()
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@pytest.mark.parametrize(
    ("url", "shares"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:5432/sqm", True),
        ("postgresql+psycopg://postgres@localhost/sqm", True),
        ("postgresql+psycopg:///sqm", True),
        ("postgresql+psycopg:///sqm?host=/var/run/postgresql", True),
        ("postgresql+psycopg://postgres@LOCALHOST/sqm", True),
        ("postgresql+psycopg://postgres@127.0.0.2/sqm", True),
        ("postgresql+psycopg://postgres@[::1]:5432/sqm", True),
        ("postgresql+psycopg:///sqm?host=localhost:5432", True),
        ("postgresql+psycopg:///sqm?host=127.0.0.1:5432&host=127.0.0.1:5433", True),
        ("postgresql+psycopg://postgres@name/sqm?hostaddr=127.0.0.1", True),
        ("postgresql+psycopg://postgres@db.example.org/sqm", False),
        ("postgresql+psycopg:///sqm?host=127.0.0.1:5432&host=db.example.org:5433", False),
        ("sqlite:////tmp/registry.sqlite3", False),
    ],
)
def test_a_database_server_shares_the_cores_when_it_runs_here(
    url: str, shares: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    assert _server_shares_cores(make_url(url)) is shares


def test_without_a_host_the_server_is_where_pghost_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "db.example.org")
    assert not _server_shares_cores(make_url("postgresql+psycopg:///sqm"))
    monkeypatch.setenv("PGHOST", "/var/run/postgresql")
    assert _server_shares_cores(make_url("postgresql+psycopg:///sqm"))


class _Verdicts(BusyCores):
    """A meter that answers busy ``busy_looks`` times, then spare."""

    def __init__(self, busy_looks: int) -> None:
        super().__init__()
        self.left = busy_looks
        self.looks = 0
        self.pause = 0.0

    def busy(self) -> bool:
        time.sleep(self.pause)
        self.looks += 1
        self.left -= 1
        return self.left >= 0


def test_a_store_waits_for_spare_cpu_while_the_index_trails_by_little() -> None:
    meter = _Verdicts(busy_looks=3)
    priority = _Recorded(trail=100, store_idle=True, server_cores=meter)
    counts: list[int] = []

    def recount() -> int:
        counts.append(len(counts))
        return 10

    try:
        priority.run(lambda: None, 5, storing=False, recount=recount)  # computing: no wait
        assert meter.looks == 0
        priority.run(lambda: None, 5, storing=True, recount=recount)
    finally:
        priority.close()
    assert meter.looks == 4 and len(counts) == 3  # three busy looks, then spare
    assert [policy for *_, policy in priority.runs] == [os.SCHED_IDLE, os.SCHED_IDLE]


def test_a_store_stops_waiting_once_the_index_trails_too_far(
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter = _Verdicts(busy_looks=1_000)
    priority = _Recorded(trail=100, store_idle=True, server_cores=meter)
    behind = iter([40, 80, 120])  # the log grows while the store waits
    try:
        with caplog.at_level(logging.WARNING, logger="sqm.registry.integrator"):
            priority.run(lambda: None, 20, storing=True, recount=lambda: next(behind))
        # Without a way to count again, a store does not wait at all.
        priority.run(lambda: None, 20, storing=True)
    finally:
        priority.close()
    assert meter.looks == 3
    policies = [policy for *_, policy in priority.runs]
    assert policies[0] == os.sched_getscheduler(0) != os.SCHED_IDLE  # hurried: normal priority
    assert any("trails the log by 120 entries" in r.getMessage() for r in caplog.records)


def test_a_store_waits_for_spare_cpu_no_longer_than_its_patience() -> None:
    # Load that is not submissions (a build on a shared host) may keep the cores busy for
    # long: the index still moves, a batch at a time, at the lowest priority.
    meter = _Verdicts(busy_looks=10**9)
    meter.pause = 0.01  # as a real look waits for its window
    priority = _Recorded(trail=100, store_idle=True, server_cores=meter)
    priority.patience = 0.3
    started = time.monotonic()
    try:
        priority.run(lambda: None, 5, storing=True, recount=lambda: 5)
    finally:
        priority.close()
    assert 0.3 <= time.monotonic() - started < 2
    assert [policy for *_, policy in priority.runs] == [os.SCHED_IDLE]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_the_index_waits_while_other_processes_keep_the_cores_busy(
    engine: Engine, tmp_path: Path
) -> None:
    registry = create_app(_config(engine, tmp_path, None))
    indexer: Indexer = registry.extensions["sqm"]["indexer"]
    log = registry.extensions["sqm"]["log"]
    before = indexer.position()
    for number in range(3):
        log.sequence(b"entry %d" % number)
    log.integrate()
    priority = SpareCpu(trail=1_000, store_idle=True, server_cores=BusyCores())
    background = Indexer(indexer.engine, batch=8, priority=priority)
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    worker = threading.Thread(target=background.catch_up)
    try:
        time.sleep(0.3)
        worker.start()
        time.sleep(1.5)
        assert indexer.position() == before  # the store waits for spare CPU
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    worker.join(30)
    priority.close()
    assert not worker.is_alive() and indexer.position() == before + 3
