"""Entries whose request died before integrating them still reach the tree: at start-up, and
within about one interval by the background sweep."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.errors import RegistryError
from sqm.registry.indexer import Indexer
from sqm.registry.integrator import SpareCpu
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

    def __init__(self, trail: int, store_idle: bool) -> None:
        super().__init__(trail, store_idle)
        self.runs: list[tuple[int, bool, int]] = []

    def run(self, work: Callable[[], T], behind: int, storing: bool) -> T:
        def noted() -> T:
            self.runs.append((behind, storing, os.sched_getscheduler(0)))
            return work()

        return super().run(noted, behind, storing)


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
