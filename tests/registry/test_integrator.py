"""Entries whose request died before integrating them still reach the tree: at start-up, and
within about one interval by the background sweep."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.errors import RegistryError
from sqm.registry.indexer import Indexer
from sqm.registry.integrator import IdleThread
from sqm.registry.seed import seed
from tests.conftest import EXAMPLES


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


def test_index_rows_are_computed_at_idle_priority_and_stored_at_normal_priority(
    engine: Engine, tmp_path: Path
) -> None:
    registry = create_app(_config(engine, tmp_path, None))
    logged = seed(registry.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "keys")
    indexer: Indexer = registry.extensions["sqm"]["indexer"]
    idle = IdleThread()
    policies: list[int] = []

    def computing(work: Callable[[], Any]) -> Any:
        policies.append(idle(lambda: os.sched_getscheduler(0)))
        return idle(work)

    try:
        background = Indexer(indexer.engine, prepare_in=computing)
        assert background.rebuild() >= len(logged) > 0
    finally:
        idle.close()
    assert policies and set(policies) == {os.SCHED_IDLE}
    # The storing thread, which holds the writer lock, keeps its priority.
    assert os.sched_getscheduler(0) != os.SCHED_IDLE
    assert background.check() == []  # every row as the log yields it
