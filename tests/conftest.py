"""Shared paths and example discovery for the test suite."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
VALID_FEEDS = sorted((EXAMPLES / "feeds").iterdir())
CSV_FEEDS = sorted(p for p in (EXAMPLES / "csv").iterdir() if p.is_dir())
RDF_FEEDS = sorted((EXAMPLES / "rdf").iterdir())
INVALID_DIR = EXAMPLES / "invalid"
# The examples' data describe October 2026; time rules are judged as of this instant.
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def load_feed(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def invalid_cases() -> list[dict[str, Any]]:
    """Every invalid example with its expectation (the .expected.yaml beside it)."""
    cases = []
    for expected in sorted(INVALID_DIR.glob("*.expected.yaml")):
        case = yaml.safe_load(expected.read_text(encoding="utf-8"))
        case["path"] = INVALID_DIR / case["file"]
        cases.append(case)
    return cases


def declared_profiles(feed: Any) -> list[str]:
    from sqm.schema import profile_by_iri

    return [profile_by_iri(iri).name for iri in feed["header"].get("profiles", [])]


@pytest.fixture(scope="session")
def made() -> Any:
    """A complete signed, logged and timestamped bundle with its trust root."""
    from tests.trust.builders import build_bundle

    return build_bundle()
