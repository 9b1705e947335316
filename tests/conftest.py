"""Shared paths and example discovery for the test suite."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, create_engine, text

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


# --- registry databases and a live registry (registry, client and CLI tests) --------------------

POSTGRES_ADMIN = os.environ.get(
    "SQM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def fresh_postgres_database(options: str = "", prefix: str = "sqm_test") -> Iterator[str]:
    """The URL of a new PostgreSQL database (CREATE DATABASE ... ``options``), dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" {options}'))
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The registry's tables on SQLite (a temporary file) and on PostgreSQL (a fresh database
    per test run, emptied after each test)."""
    from sqm.registry.db import make_engine, metadata

    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    else:
        made = make_engine(request.getfixturevalue("postgres_url"))
    try:
        yield made
    finally:
        if made.dialect.name == "postgresql":
            metadata.drop_all(made)
        made.dispose()


@pytest.fixture
def live_registry(engine: Engine, tmp_path: Path) -> Iterator[str]:
    """The base URL of a registry served by a real HTTP server (Werkzeug, threaded) over
    ``engine``'s database; its operator token is ``operator-secret``."""
    from sqm.registry.app import create_app
    from sqm.registry.config import RegistryConfig
    from tests.registry.servers import serving

    url = engine.url.render_as_string(hide_password=False)
    config = RegistryConfig(
        data_dir=tmp_path / "registry", database_url=url, operator_token="operator-secret"
    )
    with serving(create_app(config)) as base:
        yield base
