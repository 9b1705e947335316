"""Group commit: the writes of one process that reach the log together share one transaction.

The log has a single writer (:meth:`TransparencyLog.writing`); each write transaction
sequences entries, integrates them (Merkle nodes, a checkpoint signed and timestamped) and
commits (an fsync on SQLite). Done once per submission, that fixed cost was most of the time
the writer lock is held. Here the first thread to arrive leads: it takes every write queued
in its process once it holds the writer lock, runs them in one transaction (when one is
refused, the batch runs again with each write in a savepoint, so that a write that fails
rolls back alone and its error goes to its own request), integrates them all under one
checkpoint and commits once; threads arriving meanwhile queue for the next leader. With one
request per process at a time (gunicorn's sync workers) every batch holds one write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from sqm.registry.driver import pipelined
from sqm.registry.log import Integration, TransparencyLog, UnmetConditionError
from sqm.registry.timestampers import TimestampUnavailableError

# A write returns the sequence number of the entry it stored, or a function that gives it
# once the answer carrying it has arrived (TransparencyLog.sequence_later).
Write = Callable[[Connection], int | Callable[[], int]]


@dataclass
class _Ticket:
    write: Write
    pipelinable: bool = False
    done: bool = False
    seq: int | None = None
    later: Callable[[], int] | None = None
    integration: Integration | None = None
    error: BaseException | None = None

    def start(self, connection: Connection) -> None:
        """Run the write; its sequence number is known after :meth:`finish`."""
        sequenced = self.write(connection)
        if isinstance(sequenced, int):
            self.seq = sequenced
        else:
            self.later = sequenced

    def finish(self) -> None:
        """Read the write's sequence number; a write whose condition did not hold stored
        nothing, and fails alone (the batch's other writes go on)."""
        if self.later is not None:
            later, self.later = self.later, None
            try:
                self.seq = later()
            except UnmetConditionError as exc:
                self.error = exc


class GroupCommit:
    """Runs writes as the log's single writer, batching those of concurrent threads."""

    def __init__(self, log: TransparencyLog) -> None:
        self.log = log
        self._condition = threading.Condition()
        self._queued: list[_Ticket] = []
        self._leading = False

    def run(self, write: Write, pipelinable: bool = False) -> tuple[int, Integration]:
        """Run ``write`` (which sequences one entry and stores its rows) and integrate its
        entry: (its sequence number, the integration that logged it) once committed.
        Raises what ``write`` raised (nothing of it was stored), TimestampUnavailableError
        when the entry committed but a TSA failed (it is logged later), or the transaction's
        own error (nothing of the batch was stored).

        ``pipelinable``: ``write`` runs only driver statements (:class:`Prepared`) and
        decides nothing on a write's outcome, so that on PostgreSQL it may run in a pipeline
        with the batch's other such writes (:meth:`_together`). Not so a write through
        ``Connection.execute``, which reads a cursor's rowcount and description before a
        pipelined answer has arrived, or one that catches its own refusal, which in a pipeline
        surfaces in a later statement."""
        ticket = _Ticket(write, pipelinable)
        with self._condition:
            self._queued.append(ticket)
            while self._leading and not ticket.done:
                self._condition.wait()
            lead = not ticket.done
            if lead:
                self._leading = True
        if lead:
            batch: list[_Ticket] = []
            try:
                self._commit(batch)
            finally:
                with self._condition:
                    self._leading = False
                    for each in batch:
                        each.done = True
                    self._condition.notify_all()
        if ticket.error is not None:
            raise ticket.error
        assert ticket.seq is not None and ticket.integration is not None
        return ticket.seq, ticket.integration

    def _take(self, batch: list[_Ticket]) -> None:
        with self._condition:
            batch.extend(self._queued)
            self._queued = []

    def _commit(self, batch: list[_Ticket]) -> None:
        """Take the queue into ``batch`` once the writer lock is held, and commit it. Why
        then and not before waiting for the lock: the writes that queue meanwhile (while
        another worker process holds the lock) join this batch instead of waiting for the
        next one, so batches grow with contention and each lock hold serves more writes.

        The writes first run side by side; when one is refused, that transaction rolls back
        and the batch runs again with each write in a savepoint, so that the refused write
        fails alone. Why not savepoints from the start: each costs two more statements per
        write inside the lock, round trips that on PostgreSQL were half of a write's time
        there, for what a refusal (a duplicate or a taken sequence) needs only rarely."""
        try:
            self._attempt(batch, isolated=False)
        except _RefusedError:
            for ticket in batch:
                ticket.seq = ticket.later = ticket.error = ticket.integration = None
            self._attempt(batch, isolated=True)

    def _attempt(self, batch: list[_Ticket], isolated: bool) -> None:
        written: list[_Ticket] = []
        logged: Integration | None = None
        try:
            with self.log.writing(exclusive=True) as connection:
                self._take(batch)
                if isolated:
                    self._isolated(connection, batch, written)
                    logged = self._append(connection, written) if written else None
                else:
                    logged = self._together(connection, batch, written)
        except _RefusedError:
            raise
        except BaseException as exc:  # the transaction failed: nothing of the batch is stored
            if not batch:  # it never started: the queue hears why
                self._take(batch)
            for ticket in batch:
                if ticket.error is None or ticket in written:  # a refused write keeps its own
                    ticket.error = exc
                    ticket.integration = None
            raise
        if logged is not None:  # committed: the writing block ended without an error
            self.log.remember(logged)

    def _append(self, connection: Connection, written: list[_Ticket]) -> Integration | None:
        """Integrate the batch's entries (with whatever else waits); None when a TSA failed
        (then the batch wrote nothing of the tree, and its entries commit unlogged), or when
        nothing waited (every write's condition failed)."""
        try:
            integration = self.log.append(connection)
        except TimestampUnavailableError as exc:
            for ticket in written:
                if ticket.error is None:  # one whose condition failed stored nothing
                    ticket.error = exc
            return None
        for ticket in written:
            ticket.integration = integration
        return integration

    def _together(
        self, connection: Connection, batch: list[_Ticket], written: list[_Ticket]
    ) -> Integration | None:
        """Run the batch's writes side by side and integrate them. When every write is
        pipelinable, the writes and integration's reads go to the server in one libpq
        pipeline (PostgreSQL), answered in one round trip, and integration's writes in the
        next: BEGIN, the lock, those two and COMMIT, however many entries the batch holds
        (before: a round trip for each write, one more for its last rows, and two or three
        for integration's). A refusal, in whichever statement it surfaces up to integration's
        read, raises :class:`_RefusedError`."""
        together = all(ticket.pipelinable for ticket in batch)
        with pipelined(connection) if together else nullcontext():
            try:
                for ticket in batch:
                    ticket.start(connection)
                    written.append(ticket)
            except Exception as exc:  # the batch runs again, in savepoints
                raise _RefusedError from exc
            try:
                # In the pipeline, integration's read waits for the answers to all the writes:
                # a write's refusal surfaces there, as the database's error.
                integrated = self._append(connection, written) if together else None
                for ticket in written:
                    ticket.finish()
            except SQLAlchemyError as exc:
                raise _RefusedError from exc
        return integrated if together else self._append(connection, written)

    @staticmethod
    def _isolated(connection: Connection, batch: list[_Ticket], written: list[_Ticket]) -> None:
        """Run each write in a savepoint of its own: a refused one fails alone."""
        for ticket in batch:
            try:
                with connection.begin_nested():
                    ticket.start(connection)
                    ticket.finish()
            except Exception as exc:
                ticket.error = exc  # that request's own: its savepoint rolled back
            else:
                if ticket.error is None:  # its condition held: it stored its entry
                    written.append(ticket)


class _RefusedError(Exception):
    """A write of a batch run without savepoints was refused: the batch runs again."""
