"""Registry tests run against both databases: the ``engine`` fixture (tests/conftest.py) is
SQLite in a temporary file and a fresh PostgreSQL database per test run, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import fresh_postgres_database


@pytest.fixture
def icu_postgres_url() -> Iterator[str]:
    """A PostgreSQL database whose collation is ICU's en-US, as many servers are set up."""
    options = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
    with fresh_postgres_database(options, prefix="sqm_test_icu") as url:
        yield url
