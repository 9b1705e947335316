"""Statements run through the database driver store and read what SQLAlchemy would."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import (
    BigInteger,
    Engine,
    bindparam,
    create_engine,
    delete,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool

from sqm.registry.db import log_checkpoints, log_pending, suppliers
from sqm.registry.driver import Prepared, pipelined
from sqm.registry.errors import RegistryError
from tests.registry.wire import traced

_NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
_CHECKPOINT = Prepared(log_checkpoints.insert())
_CHECKPOINTS = Prepared(
    select(log_checkpoints.c.size, log_checkpoints.c.created_at, log_checkpoints.c.timestamp)
    .where(log_checkpoints.c.size >= bindparam("smallest"))
    .order_by(log_checkpoints.c.size)
)


def _row(size: int, moment: datetime) -> dict[str, object]:
    return {"size": size, "note": f"note {size}\n", "timestamp": b"\x00\x01", "created_at": moment}


def _stored(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(text("SELECT * FROM log_checkpoints ORDER BY size"))
        ]


def test_values_are_stored_and_read_as_sqlalchemy_stores_and_reads_them(engine: Engine) -> None:
    # The same instant at another UTC offset, and a naive one: each type's bind processor
    # must apply (SQLite stores text that SQLAlchemy formats).
    moments = [_NOON, _NOON.astimezone(timezone(timedelta(hours=2))), _NOON + timedelta(days=1)]
    with engine.begin() as connection:
        _CHECKPOINT.many(connection, [_row(n, m) for n, m in enumerate(moments)])
    through_driver = _stored(engine)
    with engine.connect() as connection:
        read_by_driver = _CHECKPOINTS.rows(connection, {"smallest": 0})
        read_by_sqlalchemy = [
            tuple(row)
            for row in connection.execute(
                select(
                    log_checkpoints.c.size,
                    log_checkpoints.c.created_at,
                    log_checkpoints.c.timestamp,
                ).order_by(log_checkpoints.c.size)
            )
        ]
    with engine.begin() as connection:
        connection.execute(delete(log_checkpoints))
        connection.execute(log_checkpoints.insert(), [_row(n, m) for n, m in enumerate(moments)])
    assert through_driver == _stored(engine)
    assert read_by_driver == read_by_sqlalchemy
    assert isinstance(read_by_driver[0][1], datetime) and len(read_by_driver) == 3


def test_returning_gives_the_new_rows_key_and_limits_in_the_statement_apply(
    engine: Engine,
) -> None:
    sequence = Prepared(log_pending.insert().returning(log_pending.c.seq))
    first_two = Prepared(select(log_pending.c.seq).order_by(log_pending.c.seq).limit(2))
    with engine.begin() as connection:
        made = [
            sequence.scalar(connection, {"leaf": bytes([n]), "received_at": _NOON, "chain": None})
            for n in range(3)
        ]
    assert made == sorted(made) and len(set(made)) == 3
    with engine.connect() as connection:
        assert first_two.rows(connection) == [(made[0],), (made[1],)]
        assert sequence.statement is not None


def test_a_refused_write_raises_sqlalchemys_error_and_its_transaction_rolls_back(
    engine: Engine,
) -> None:
    with engine.begin() as connection:
        _CHECKPOINT.run(connection, _row(1, _NOON))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        _CHECKPOINT.run(connection, _row(2, _NOON))
        _CHECKPOINT.run(connection, _row(1, _NOON))  # the same size again
    assert [row[0] for row in _stored(engine)] == [1]


def test_a_write_outside_a_transaction_begins_one(engine: Engine) -> None:
    # Rolled back with the connection: nothing of it is stored (no autocommit behind
    # SQLAlchemy's back).
    with engine.connect() as connection:
        _CHECKPOINT.run(connection, _row(5, _NOON))
        assert connection.in_transaction()
        connection.rollback()
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(log_checkpoints)).scalar() == 0


def test_pipelined_writes_are_stored_and_reach_postgresql_in_one_round_trip(
    engine: Engine,
) -> None:
    with engine.begin() as connection:  # the transaction begun before the block
        _CHECKPOINT.run(connection, _row(1, _NOON))
    if engine.dialect.name == "postgresql":
        with traced(engine) as wire, engine.begin() as connection:
            connection.execute(text("SELECT 1"))  # BEGIN, then a statement: two answers
            with pipelined(connection):
                for size in (2, 3, 4):
                    _CHECKPOINT.run(connection, _row(size, _NOON))
        assert wire.round_trips == 2 + 1 + 1  # the three writes together, then COMMIT
    else:
        with engine.begin() as connection, pipelined(connection):
            for size in (2, 3, 4):
                _CHECKPOINT.run(connection, _row(size, _NOON))
    assert [row[0] for row in _stored(engine)] == [1, 2, 3, 4]


def test_a_refused_write_in_a_pipeline_raises_sqlalchemys_error_and_stores_nothing(
    engine: Engine,
) -> None:
    with engine.begin() as connection:
        _CHECKPOINT.run(connection, _row(1, _NOON))
    # The refused write last: on PostgreSQL its refusal can only arrive with the pipeline's
    # answer, at the block's end.
    with pytest.raises(IntegrityError), engine.begin() as connection, pipelined(connection):
        _CHECKPOINT.run(connection, _row(2, _NOON))
        _CHECKPOINT.run(connection, _row(1, _NOON))  # the same size again
    # Refused earlier in the block, it may surface with a later statement: the same error.
    with pytest.raises(IntegrityError), engine.begin() as connection, pipelined(connection):
        _CHECKPOINT.run(connection, _row(1, _NOON))
        _CHECKPOINT.run(connection, _row(3, _NOON))
    assert [row[0] for row in _stored(engine)] == [1]
    # The pool's connections stay usable, in and out of pipelines.
    with engine.begin() as connection, pipelined(connection):
        _CHECKPOINT.run(connection, _row(2, _NOON))
    assert [row[0] for row in _stored(engine)] == [1, 2]


def test_a_refused_pipeline_logs_no_warning_of_its_own(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # psycopg warns when a pipeline ends in an error while another propagates: the error
    # raised says it all, and a client's duplicate is no server warning.
    with engine.begin() as connection:
        _CHECKPOINT.run(connection, _row(1, _NOON))
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(IntegrityError),
        engine.begin() as connection,
        pipelined(connection),
    ):
        _CHECKPOINT.run(connection, _row(1, _NOON))  # refused: its answer comes with...
        _CHECKPOINTS.rows(connection, {"smallest": 0})  # ... this read's, which raises
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_statement_whose_table_fills_in_python_defaults_is_refused(engine: Engine) -> None:
    # ``suppliers.verification`` has a Python-side default, which only SQLAlchemy's execution
    # context would compute: the driver path must not store a row without it.
    register = Prepared(suppliers.insert())
    with pytest.raises(RegistryError, match="column defaults"), engine.begin() as connection:
        register.run(connection, {"id": "lei:X", "name": "X", "identity": "{}"})


def test_statements_the_driver_path_cannot_run_as_compiled_are_refused(engine: Engine) -> None:
    # An IN list is rendered anew for each call by SQLAlchemy; parameter sets that name other
    # columns would lose values silently. Both are refused, not run wrong.
    listed = Prepared(select(log_checkpoints.c.size).where(log_checkpoints.c.size.in_([1, 2])))
    with engine.connect() as connection:
        with pytest.raises(RegistryError, match="expand"):
            listed.rows(connection)
        with pytest.raises(RegistryError, match="same columns"):
            _CHECKPOINT.many(connection, [_row(1, _NOON), {**_row(2, _NOON), "extra": 1}])
    assert _stored(engine) == []


def test_a_literal_none_in_the_statement_binds_as_null(engine: Engine) -> None:
    with engine.begin() as connection:
        _CHECKPOINT.run(connection, _row(1, _NOON))
    unstamped = Prepared(
        select(log_checkpoints.c.size).where(
            log_checkpoints.c.size == bindparam("size"), literal(None, BigInteger).is_(None)
        )
    )
    with engine.connect() as connection:
        assert unstamped.rows(connection, {"size": 1}) == [(1,)]


def test_a_lost_server_invalidates_every_pooled_connection_at_once(postgres_url: str) -> None:
    # As SQLAlchemy's own statements do: after the server drops its connections, one request
    # fails and the pool's older connections are recycled, not one failure per connection.
    from sqm.registry.db import make_engine

    engine = make_engine(postgres_url)
    seen = Prepared(select(func.count()).select_from(log_checkpoints))
    try:
        held = [engine.connect() for _ in range(3)]
        for connection in held:
            seen.scalar(connection)
        pids = [c.exec_driver_sql("SELECT pg_backend_pid()").scalar() for c in held]
        for connection in held:
            connection.close()
        admin = create_engine(postgres_url, poolclass=NullPool)  # not one of the pool's
        with admin.connect() as connection:
            for pid in pids:
                connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        admin.dispose()
        outcomes = []
        for _ in range(4):
            try:
                with engine.connect() as connection:
                    seen.scalar(connection)
                outcomes.append("ok")
            except DBAPIError as exc:
                assert exc.connection_invalidated
                outcomes.append("lost")
        assert outcomes.count("lost") <= 1 and outcomes[-3:] == ["ok"] * 3
    finally:
        engine.dispose()
