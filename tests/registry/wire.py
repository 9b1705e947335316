"""What a PostgreSQL client sends and receives, from libpq's own protocol trace: for tests
that count round trips, which the server's CPU and, on busy cores, the log's lock hold follow."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import pq
from sqlalchemy import Engine, event


class Wire:
    """The protocol messages of every connection ``engine`` lent out while tracing."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @property
    def round_trips(self) -> int:
        """How often the client sent and then read the server's answer: in the trace, a
        message from the client ("F") followed by one from the server ("B"). A pipeline
        sends many statements before it reads; a simple query (BEGIN, COMMIT) is one."""
        directions = [line[0] for line in self.lines if line[:1] in ("F", "B")]
        return sum(1 for pair in itertools.pairwise(directions) if pair == ("F", "B"))

    @property
    def statements(self) -> int:
        """Statements the client ran: extended-protocol executions and simple queries."""
        return sum(
            1
            for line in self.lines
            if line.startswith("F") and ("\tExecute\t" in line or "\tQuery\t" in line)
        )

    def queries(self, text: str) -> int:
        """Simple-protocol queries whose text is ``text`` (psycopg sends BEGIN so)."""
        return sum(1 for line in self.lines if line.endswith(f'Query\t "{text}"'))


@contextmanager
def traced(engine: Engine) -> Iterator[Wire]:
    """Trace every connection checked out of ``engine``'s pool during the block."""
    wire = Wire()
    with tempfile.TemporaryFile("w+") as sink:
        tracing: list[Any] = []

        def on_checkout(dbapi_connection: Any, *_: Any) -> None:
            tracing.append(dbapi_connection)
            dbapi_connection.pgconn.trace(sink.fileno())
            dbapi_connection.pgconn.set_trace_flags(
                pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE
            )

        def on_checkin(dbapi_connection: Any, *_: Any) -> None:
            if dbapi_connection in tracing:  # not one checked out before the block
                tracing.remove(dbapi_connection)
                dbapi_connection.pgconn.untrace()

        event.listen(engine, "checkout", on_checkout)
        event.listen(engine, "checkin", on_checkin)
        try:
            yield wire
        finally:
            event.remove(engine, "checkout", on_checkout)
            event.remove(engine, "checkin", on_checkin)
            for still_out in tracing:  # checked out beyond the block: its lines end here
                still_out.pgconn.untrace()
            sink.seek(0)
            wire.lines[:] = sink.read().splitlines()
