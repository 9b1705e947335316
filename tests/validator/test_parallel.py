"""The parallel validator finds exactly what the serial one finds, in the same order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sqm.validator import iter_findings, load_baseline, parallel
from tests.conftest import EXAMPLES, NOW

DATA = Path(__file__).resolve().parent.parent / "data"
SOURCES = sorted((EXAMPLES / "feeds").glob("*.json")) + sorted((DATA / "invalid").glob("*.json"))


def _as_ndjson(document: dict[str, Any], path: Path, *, record_first: str = "") -> Path:
    sections = [k for k in document if k != "header"]
    if record_first:  # one section of records before the declarations: workers start early
        sections = [record_first] + [s for s in sections if s != record_first]
    lines = [json.dumps({"header": document["header"]})] if "header" in document else []
    for section in sections:
        value = document[section]
        items = value if isinstance(value, list) else [value]
        lines += [json.dumps({section: item}) for item in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(path: Path, jobs: int, **options: Any) -> list[tuple[Any, ...]]:
    return [
        (
            f.code,
            f.severity.value,
            f.pointer,
            f.line,
            f.column,
            f.source,
            f.message,
            f.hint,
            f.value,
            f.record,
        )
        for f in iter_findings(path, now=NOW, jobs=jobs, **options)
    ]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Several batches even for small feeds, so ordering across batches is exercised.
    monkeypatch.setattr(parallel, "BATCH_LINES", 3)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_parallel_equals_serial(source: Path, tmp_path: Path) -> None:
    feed = _as_ndjson(json.loads(source.read_text(encoding="utf-8")), tmp_path / "feed.ndjson")
    serial = _run(feed, 1)
    assert _run(feed, 2) == serial


def test_late_declarations_are_handled_like_serial(tmp_path: Path) -> None:
    document = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    document["capability_records"][0]["cpk"] = 2.5  # inconsistent with its declared limits
    feed = _as_ndjson(document, tmp_path / "late.ndjson", record_first="delivery_records")
    serial = _run(feed, 1)
    assert "SQM-E004" in {row[0] for row in serial}
    assert _run(feed, 2) == serial


def test_broken_lines_and_unknown_sections_keep_their_places(tmp_path: Path) -> None:
    document = json.loads((EXAMPLES / "feeds" / "electronics-assembly.json").read_text())
    feed = _as_ndjson(document, tmp_path / "broken.ndjson")
    lines = feed.read_text().splitlines()
    lines.insert(12, '{"capability_records": {"id": "x",}}')
    lines.insert(15, '{"gadgets": {"id": "g-1"}}')
    lines.insert(18, json.dumps({"header": document["header"]}))
    feed.write_text("\n".join(lines) + "\n")
    serial = _run(feed, 1)
    assert {"SQM-X001", "SQM-S002", "SQM-X007"} <= {row[0] for row in serial}
    assert _run(feed, 2) == serial


def test_baseline_and_profiles_reach_the_workers(tmp_path: Path) -> None:
    jumped = DATA / "invalid" / "capability-cpk-jump-against-previous-feed.json"
    feed = _as_ndjson(json.loads(jumped.read_text()), tmp_path / "feed.ndjson")
    baseline = load_baseline(DATA / "baseline" / "automotive-machining-2026-09.json")
    options = {"baseline": baseline, "profiles": ("automotive",)}
    serial = _run(feed, 1, **options)
    assert "SQM-P005" in {row[0] for row in serial}
    assert _run(feed, 2, **options) == serial
