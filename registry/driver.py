"""The write path's statements, compiled once per dialect and run through the driver's cursor.

Why not ``Connection.execute``: SQLAlchemy spends 40-50 µs of Python per statement (execution
context, parameter and result objects) where sqlite3 and psycopg take 3-10 µs, and a
submission runs about ten statements, most of them inside the log's single-writer lock that
every worker waits for. Here a statement stays an SQLAlchemy construct (one definition, both
dialects); only its execution is hand-written: the SQL is compiled once per dialect and set of
parameter names, values go through the column types' bind processors and come back through
their result processors as SQLAlchemy would apply them, and driver errors are raised as
SQLAlchemy's (an ``IntegrityError`` stays one), so callers catch them alike.

Statements run in the connection's current transaction; a write begins one when none is open,
as SQLAlchemy's autobegin would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, NoReturn

from sqlalchemy import Table, bindparam, func
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Delete, Insert, Select, Update

from sqm.registry.errors import RegistryError

Statement = Select[Any] | Insert | Update | Delete
Processor = Callable[[Any], Any]


class _Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...]  # the parameters in the driver's order (positional dialects)
    positional: bool
    defaults: dict[str, Any]  # parameters with a value in the statement itself (a LIMIT)
    binds: tuple[tuple[str, Processor], ...]  # parameters whose type converts the value
    results: tuple[Processor | None, ...] | None  # per result column; None: no conversion


class Prepared:
    """A statement run through the database driver (see the module's docstring)."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._writes = not isinstance(statement, Select)
        # Known from the statement, not the cursor: in a pipeline a cursor describes its
        # result only once that has arrived, which fetching it waits for.
        self._returns = _returns_rows(statement)
        self._compiled: dict[tuple[str, str, tuple[str, ...]], _Compiled] = {}

    def rows(
        self, connection: Connection, parameters: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run the statement once; the rows it returns (none for a write without RETURNING)."""
        return self.later(connection, parameters)()

    def later(
        self, connection: Connection, parameters: Mapping[str, Any] | None = None
    ) -> Callable[[], list[tuple[Any, ...]]]:
        """Send the statement now; its rows (as :meth:`rows`) when the returned function is
        called. In a :func:`pipelined` block that call waits for the answer, which comes in
        the round trip of whatever was sent before it, so statements sent this way and read
        afterwards cost one round trip together. Outside a pipeline the statement has run,
        and its rows have been read, when this returns, and its errors are raised here."""
        given = parameters or {}
        compiled = self._compile(connection, tuple(sorted(given)))
        bound = _bound(compiled, given)
        waits = in_pipeline(connection)
        with _cursor(connection, self._writes, compiled.sql, close=not waits) as cursor:
            cursor.execute(compiled.sql, bound)
            if not waits:  # read now: an unread cursor keeps a SQLite statement running
                found = self._converted(compiled, cursor.fetchall() if self._returns else [])
                return lambda: found

        def fetched() -> list[tuple[Any, ...]]:
            with _cursor(connection, False, compiled.sql, cursor) as reading:
                return self._converted(compiled, reading.fetchall() if self._returns else [])

        return fetched

    @staticmethod
    def _converted(compiled: _Compiled, found: Sequence[Any]) -> list[tuple[Any, ...]]:
        if compiled.results is None:
            return [tuple(row) for row in found]
        convert = compiled.results
        return [
            tuple(
                value if p is None or value is None else p(value)
                for p, value in zip(convert, row, strict=True)
            )
            for row in found
        ]

    def scalar(self, connection: Connection, parameters: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, or None when there is no row."""
        found = self.rows(connection, parameters)
        return found[0][0] if found else None

    def run(self, connection: Connection, parameters: Mapping[str, Any] | None = None) -> None:
        """Run a write once."""
        self.rows(connection, parameters)

    def many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per parameter set, in one driver executemany."""
        if not rows:
            return
        keys = tuple(sorted(rows[0]))
        if any(len(row) != len(keys) for row in rows):
            # SQLAlchemy refuses parameter sets that name other columns; so does this.
            raise RegistryError(f"every parameter set must name the same columns: {keys}")
        compiled = self._compile(connection, keys)
        bound = [_bound(compiled, row) for row in rows]
        with _cursor(connection, self._writes, compiled.sql) as cursor:
            cursor.executemany(compiled.sql, bound)

    def _compile(self, connection: Connection, keys: tuple[str, ...]) -> _Compiled:
        dialect = connection.dialect
        cached = self._compiled.get((dialect.name, dialect.driver, keys))
        if cached is not None:
            return cached
        statement = self.statement
        # An INSERT names only the columns given (the others take their defaults), as
        # SQLAlchemy compiles it for those parameters.
        compiled = statement.compile(
            dialect=dialect, column_keys=list(keys) if isinstance(statement, Insert) else None
        )
        if compiled.insert_prefetch or compiled.update_prefetch:
            # Python-side column defaults are computed by SQLAlchemy's execution context.
            raise RegistryError(f"a driver statement cannot fill in column defaults: {compiled}")
        if compiled.post_compile_params or compiled.literal_execute_params:
            # An IN list (expanding) is rendered per call by SQLAlchemy: one text cannot serve.
            raise RegistryError(f"a driver statement cannot expand parameters: {compiled}")
        names = tuple(compiled.positiontup or ()) if compiled.positional else ()
        binds: list[tuple[str, Processor]] = []
        defaults: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            if not bind.required:
                defaults[name] = bind.effective_value
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds.append((name, process))
        columns = list(statement.exported_columns) if _returns_rows(statement) else []
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
        made = _Compiled(
            compiled.string,
            names,
            compiled.positional,
            defaults,
            tuple(binds),
            results if any(p is not None for p in results) else None,
        )
        self._compiled[(dialect.name, dialect.driver, keys)] = made
        return made


def unnested(table: Table, prefix: str) -> Any:
    """PostgreSQL's ``unnest`` of one array parameter per column of ``table`` (named
    ``prefix`` + the column's name, typed as an array of the column's type), as a table with
    those columns: rows passed as columns, so that one statement writes any number of them."""
    arrays = [
        bindparam(prefix + column.key, type_=postgresql.ARRAY(column.type)) for column in table.c
    ]
    return func.unnest(*arrays).table_valued(*table.c.keys()).render_derived()


def as_columns(
    table: Table, prefix: str, rows: Sequence[Mapping[str, Any]]
) -> dict[str, list[Any]]:
    """``rows`` (each naming every column of ``table``) as the parameters of
    :func:`unnested`: one list per column."""
    return {prefix + column.key: [row[column.key] for row in rows] for column in table.c}


def _returns_rows(statement: Statement) -> bool:
    return isinstance(statement, Select) or bool(getattr(statement, "_returning", ()))


def _bound(compiled: _Compiled, given: Mapping[str, Any]) -> Any:
    values = {**compiled.defaults, **given} if compiled.defaults else dict(given)
    for name, process in compiled.binds:
        if name in values:  # None too, as SQLAlchemy binds it
            values[name] = process(values[name])
    if compiled.positional:
        return tuple(values[name] for name in compiled.names)
    return values


@contextmanager
def _cursor(
    connection: Connection, writes: bool, sql: str, cursor: Any = None, close: bool = True
) -> Iterator[Any]:
    """A driver cursor in ``connection``'s transaction (a new one, or ``cursor``), closed at
    the block's end when ``close`` is True or the block failed; driver errors raised as
    SQLAlchemy's."""
    if writes and not connection.in_transaction():
        connection.begin()
    failed = False
    try:
        if cursor is None:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        yield cursor
    except connection.dialect.loaded_dbapi.Error as exc:
        failed = True
        raise_as_sqlalchemy(connection, exc, sql, cursor)
    finally:
        if cursor is not None and (close or failed):
            cursor.close()


class _PipelineEndNoise(logging.Filter):
    """Drops psycopg's warning that ending a pipeline failed while an error of the block was
    propagating ("error ignored terminating ... pipeline aborted"): that error, raised as
    SQLAlchemy's, says all of it, and a client's refused write is no server warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_PipelineEndNoise())


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """Statements run in the block go to the server together (PostgreSQL: libpq's pipeline
    mode; elsewhere the block changes nothing). A driver error is raised as SQLAlchemy's,
    at the read or the block's end where its answer arrives, which may be after the
    statement that caused it.

    Why: on busy cores a PostgreSQL round trip inside the log's write lock took 0.7-3 ms
    (the server process must be scheduled to answer), so integration's six writes held the
    lock for some 4 ms; sent together they wait for one answer. A statement whose rows the
    block reads (:meth:`Prepared.rows`) waits there for its answer, and takes everything
    sent before it along in that round trip. A block inside another changes nothing: the
    outer block's end sends what it holds.
    """
    if connection.dialect.name != "postgresql" or in_pipeline(connection):
        yield  # within a pipeline already: its end sends this block's statements too
        return
    if not connection.in_transaction():
        connection.begin()
    driver = connection.connection.driver_connection
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            yield
    except connection.dialect.loaded_dbapi.Error as exc:
        raise_as_sqlalchemy(connection, exc, "(a pipeline of writes)", None)


def in_pipeline(connection: Connection) -> bool:
    """Whether ``connection`` is inside a :func:`pipelined` block (PostgreSQL only)."""
    if connection.dialect.name != "postgresql" or connection.closed or connection.invalidated:
        return False
    driver: Any = connection.connection.driver_connection
    return bool(driver.pgconn.pipeline_status)  # PipelineStatus.OFF is 0


def raise_as_sqlalchemy(
    connection: Connection, exc: BaseException, sql: str, cursor: Any
) -> NoReturn:
    """Raise a driver error as ``Connection.execute`` would: wrapped in SQLAlchemy's class for
    it (an ``IntegrityError`` stays one), through the engine's error events, and on a lost
    connection with the whole pool invalidated, not only this connection (its other
    connections died with the server too). SQLAlchemy's own handler does all of that; it is
    private, stable since 1.4, and this is the one place that calls it."""
    connection._handle_dbapi_exception(exc, sql, None, cursor, None)
