"""Registry tests run against both databases: the ``engine`` fixture (tests/conftest.py) is
SQLite in a temporary file and a fresh PostgreSQL database per test run, dropped afterwards."""
