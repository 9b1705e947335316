"""Validating a large NDJSON feed on several cores.

The main process reads the file only to cut it into batches of whole lines; each batch goes to a
worker process as its place in the file (offset, length, number of its first line), and the
worker reads it from the file itself and examines each line
(:meth:`NdjsonFeed.examine <sqm.validator.ndjson.NdjsonFeed.examine>`: syntax, structure,
semantics, per-record plausibility). Workers send back compact results, which the main process
settles in file order against the feed-wide state (ids, references, duplicates, copies,
expectations). Findings are the same as on one core, in the same order;
``tests/validator/test_parallel.py`` proves it.

Workers are forked once the header is read, so each starts with the feed's context without
pickling it. A characteristic declared (or declared again) after the workers started is not in
their copy: a capability record that refers to one is examined again in the main process, and
when that happens often (the declarations of a feed follow its header), the workers are
restarted with the declarations read so far. At most a few batches are in flight, so memory
stays bounded however fast the workers are; the main process never waits to send (a batch is
a few numbers), so it cannot deadlock with a worker waiting to send its results.
"""

from __future__ import annotations

import gc
import os
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

from sqm.validator import loaders
from sqm.validator.compact import DigestSet
from sqm.validator.findings import Finding
from sqm.validator.layers.plausibility import Baseline
from sqm.validator.ndjson import BLOCK_BYTES, BlockReader, Entry, NdjsonFeed, check_ndjson

# Lines per batch sent to a worker, at most.
BATCH_LINES = 400
# Batches in flight per worker: enough to keep every worker busy while the main process settles.
IN_FLIGHT = 3
# Capability records examined again in the main process before the workers are restarted
# with the characteristics declared since they started (doubled at each restart).
RESTART_AFTER = 64
MAX_RESTARTS = 8
# Workers are restarted before the first batch of records that follows at least this many lines
# of declarations sent to them (a batch "declares" when its first line starts like one).
RESTART_AFTER_DECLARATIONS = 1000
_DECLARING = (b'{"sites"', b'{"products"', b'{"characteristics"')

# A batch: (offset in the file, length in bytes, number of its first line, number of lines,
# whether its last line ends with a line feed); or (-1, 0, number, 1, True) for a line over the
# length limit, which the main process reports itself.
Batch = tuple[int, int, int, int, bool]

# The feed the workers inherit when they are forked (set just before they start).
_FEED: NdjsonFeed | None = None


def _lines(fd: int, batch: Batch) -> list[bytes]:
    start, length, _, count, newline = batch
    data = os.pread(fd, length, start)
    lines = data.split(b"\n")
    if newline:
        lines.pop()  # what follows the last line feed
    if len(lines) != count:
        raise OSError(f"the file changed while it was read (at byte {start})")
    return lines


def _examine_batch(feed: NdjsonFeed, fd: int, batch: Batch) -> list[Entry]:
    """Worker side: read a batch and examine each line."""
    lines = _lines(fd, batch)
    first, newline = batch[2], batch[4]
    last = len(lines) - 1
    entries: list[Entry] = []
    examine = feed.examine
    for offset, raw in enumerate(lines):
        entries.append(examine(first + offset, raw, newline or offset < last))
    return entries


def _serve(connection: Connection, fd: int) -> None:
    """A worker: examine batches until told to stop."""
    feed = _FEED
    assert feed is not None
    while True:
        batch = connection.recv()
        if batch is None:
            return
        try:
            result: Any = _examine_batch(feed, fd, batch)
        except BaseException as exc:  # reported by the main process
            result = exc
        connection.send(result)


def _batches(stream: BlockReader, position: int, number: int, size: int = 0) -> Iterator[Batch]:
    """Cut the rest of a stream (at ``position`` in its file, line ``number``) into batches of
    whole lines, reading it in blocks of ``size`` bytes; lines over the limit become batches of
    their own."""
    limit = loaders.MAX_LINE_BYTES
    # No block longer than the limit: a line within one block is then never over it.
    size = min(size or BLOCK_BYTES, limit)
    carry_start = -1  # where a line that continues in the next block starts, if any
    carried = 0
    skipping = False  # inside a line over the limit
    while True:
        data = stream.read(size)
        if not data:
            break
        base, position = position, position + len(data)
        begin = 0
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                continue
            skipping, begin = False, end + 1
        cut = data.rfind(b"\n", begin)
        if cut < 0:
            if begin == len(data):
                continue
            if carry_start < 0:
                carry_start, carried = base + begin, 0
            carried += len(data) - begin
            if carried > limit:
                yield -1, 0, number, 1, True
                number += 1
                carry_start, skipping = -1, True
            continue
        start = base + begin
        if carry_start >= 0:
            first_end = data.find(b"\n", begin)
            if carried + first_end - begin > limit:
                yield -1, 0, number, 1, True
                number += 1
                begin = first_end + 1
                start = base + begin
            else:
                start = carry_start
            carry_start = -1
        if begin <= cut:
            for batch in _split(data, start, base, begin, cut, number):
                yield batch
                number = batch[2] + batch[3]
        if cut + 1 < len(data):
            carry_start, carried = base + cut + 1, len(data) - cut - 1
    if carry_start >= 0 and not skipping:
        yield carry_start, carried, number, 1, False


def _split(
    data: bytes, start: int, base: int, begin: int, cut: int, number: int
) -> Iterator[Batch]:
    """Batches of at most BATCH_LINES lines: the lines from ``start`` (in the file) to the line
    feed at ``cut`` (in ``data``, which begins at ``base``); ``begin`` is where in ``data`` the
    lines after any carried start are. Line feeds are found one by one (``find`` is a memchr;
    ``count`` would be several times slower on long lines)."""
    size = BATCH_LINES
    find = data.find
    end = begin
    count = 0
    while end <= cut:
        end = find(b"\n", end) + 1
        count += 1
        if count == size and end <= cut:
            yield start, base + end - start, number, size, True
            start, number, count = base + end, number + size, 0
    yield start, base + cut + 1 - start, number, count, True


class _Workers:
    """Worker processes forked from this one: they know the feed as it is now."""

    def __init__(self, feed: NdjsonFeed, fd: int, jobs: int) -> None:
        global _FEED
        self.feed, self.fd = feed, fd
        # Characteristics given a spec from now on are unknown to these workers.
        self.changed = feed.checker.cross.changed = DigestSet()
        self.again = 0  # records examined again in this process
        self.busy = [0] * jobs  # batches sent to each worker and not yet answered
        self.connections: list[Connection] = []
        self.processes: list[Any] = []
        import multiprocessing  # here: a run on one core does without it

        context = multiprocessing.get_context("fork")
        _FEED = feed
        gc.freeze()  # the workers share the state so far without the collector copying it
        try:
            for _ in range(jobs):
                mine, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(theirs, fd), daemon=True)
                process.start()
                theirs.close()
                self.connections.append(mine)
                self.processes.append(process)
        finally:
            _FEED = None

    def idle(self) -> int | None:
        """The least busy worker, if one can take another batch."""
        worker = min(range(len(self.busy)), key=self.busy.__getitem__)
        return worker if self.busy[worker] < IN_FLIGHT else None

    def send(self, worker: int, batch: Batch) -> None:
        self.connections[worker].send(batch)
        self.busy[worker] += 1

    def settle(self, worker: int, batch: Batch) -> list[Finding]:
        """Receive a batch's results and settle them in this process."""
        entries = self.connections[worker].recv()
        self.busy[worker] -= 1
        if isinstance(entries, BaseException):
            raise entries
        feed, changed = self.feed, self.changed
        first, newline = batch[2], batch[4]
        last = len(entries) - 1
        lines: list[bytes] | None = None
        out: list[Finding] = []
        for offset, entry in enumerate(entries):
            number = first + offset
            if (
                type(entry) is tuple
                and len(entry) == 7
                and entry[6] is not None
                and changed
                and entry[6] in changed
            ):
                # Its characteristic was declared after the workers started: examine it here,
                # where every declaration so far is known.
                lines = lines or _lines(self.fd, batch)
                entry = feed.examine(number, lines[offset], newline or offset < last)
                self.again += 1
            feed.settle(number, entry, out)
        return out

    def close(self, graceful: bool = True) -> None:
        """Stop the workers: ask them when they are idle, otherwise end them."""
        for connection in self.connections:
            try:
                if graceful:
                    connection.send(None)
            except OSError:
                pass
        for process in self.processes:
            if graceful:
                process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
        for connection in self.connections:
            connection.close()
        self.feed.checker.cross.changed = None


def _pooled(feed: NdjsonFeed, batches: Iterator[Batch], fd: int, jobs: int) -> Iterator[Finding]:
    """Findings for the batches, examined on ``jobs`` workers and settled here in order."""
    workers = _Workers(feed, fd, jobs)
    pending: deque[tuple[int, Batch]] = deque()  # (worker or -1, batch), in file order
    restart_after, restarts = RESTART_AFTER, 0
    declarations = 0  # lines of batches of declarations sent to these workers
    try:
        for batch in batches:
            if batch[0] < 0:
                pending.append((-1, batch))
                continue
            if os.pread(fd, len(_DECLARING[-1]), batch[0]).startswith(_DECLARING):
                declarations += batch[3]
            elif (declarations >= RESTART_AFTER_DECLARATIONS or workers.again > restart_after) and (
                restarts < MAX_RESTARTS
            ):
                # Records follow declarations the workers do not know (or many records already
                # referred to them): finish what is in flight, then start workers that know
                # every declaration so far.
                while pending:
                    yield from _settle_oldest(feed, workers, pending)
                workers.close()
                workers = _Workers(feed, fd, jobs)
                declarations, restarts = 0, restarts + 1
                restart_after *= 2
            worker = workers.idle()
            while worker is None:
                yield from _settle_oldest(feed, workers, pending)
                worker = workers.idle()
            workers.send(worker, batch)
            pending.append((worker, batch))
        while pending:
            yield from _settle_oldest(feed, workers, pending)
    finally:
        workers.close(graceful=not pending)
        gc.unfreeze()


def _settle_oldest(
    feed: NdjsonFeed, workers: _Workers, pending: deque[tuple[int, Batch]]
) -> list[Finding]:
    worker, batch = pending.popleft()
    if worker >= 0:
        return workers.settle(worker, batch)
    out: list[Finding] = []
    feed.settle(batch[2], feed.examine(batch[2], None, True), out)  # a line over the limit
    return out


def iter_parallel_ndjson(
    stream: BlockReader,
    source: str,
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
    jobs: int = 2,
) -> Iterator[Finding]:
    """Findings for an NDJSON feed, checked on ``jobs`` worker processes. The stream must be a
    file (the workers read their batches from it); any other is checked on one core."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        position = stream.tell()  # type: ignore[attr-defined]
        os.pread(fd, 0, position)
    except (AttributeError, OSError, ValueError):
        yield from check_ndjson(stream, source, profiles, now=now, baseline=baseline)
        return
    feed = NdjsonFeed(source, profiles, now=now, baseline=baseline)
    batches = _batches(stream, position, 1)
    # The header (and whatever precedes it) in this process.
    for batch in batches:
        lines: list[bytes | None] = [None] if batch[0] < 0 else [*_lines(fd, batch)]
        start, _, first, _, newline = batch
        out: list[Finding] = []
        last = len(lines) - 1
        for offset, raw in enumerate(lines):
            number = first + offset
            if feed.header_seen and not feed.warned:
                # The rest of the batch and the batches after it go to the workers.
                done = sum(len(line) + 1 for line in lines[:offset] if line is not None)
                rest = (start + done, batch[1] - done, number, len(lines) - offset, newline)
                yield from out
                yield from _pooled(feed, _chain(rest, batches), fd, jobs)
                yield from feed.finish()
                return
            feed.settle(number, feed.examine(number, raw, newline or offset < last), out)
        # Before the header (or in a feed that does not start with it, which is checked on
        # one core from there on, exactly as the serial reader does).
        yield from out
    yield from feed.finish()


def _chain(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield from rest
