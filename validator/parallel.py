"""Validating a large NDJSON feed on several cores.

The checks of one record that need no other record (structure, semantics, per-record
plausibility) run in worker processes on batches of raw lines; the main process reads the
file, keeps the feed-wide state (ids, references, duplicates, copies, expectations) and settles
every record in file order. Findings are the same as :func:`sqm.validator.api.iter_findings`
gives on one core, in the same order per record; ``tests/validator/test_parallel.py`` proves it.

Workers are forked after the header and the leading declarations are checked, so each starts
with that context without pickling it. A characteristic declared later in the stream is not in
the workers' copy: capability records that refer to one are re-examined in the main process.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson

from sqm.validator.engine import DECLARATION_SECTIONS, Examined, FeedChecker, check_parts
from sqm.validator.findings import Finding
from sqm.validator.layers.crossrecord import CrossFacts
from sqm.validator.layers.plausibility import Baseline, PlausibilityFacts
from sqm.validator.loaders import (
    LineReader,
    iter_lines,
    iter_ndjson_lines,
    parse_ndjson_line,
    syntax,
)

BATCH_LINES = 400
# The checker the workers inherit when they are forked (set just before the pool starts).
_WORKER: FeedChecker | None = None

# Plain tuples cross the process boundary: unpickling NamedTuples costs five times more.
Wire = tuple[
    bool, list[Finding], tuple[Any, ...] | None, tuple[Any, ...] | None, tuple[tuple[str, str], ...]
]
Result = tuple[int, str | None, Wire | None, list[Finding]]


def _start_worker() -> None:
    assert _WORKER is not None
    _WORKER.cross.freeze_declared()


def _examine_batch(batch: list[tuple[int, bytes | None]]) -> list[Result]:
    """Worker side: parse and examine each line of a batch."""
    checker = _WORKER
    assert checker is not None
    out: list[Result] = []
    for number, raw in batch:
        parsed = parse_ndjson_line(number, raw, "")
        if parsed is None:
            out.append((number, None, None, []))
        elif isinstance(parsed, Finding):
            out.append((number, None, None, [parsed]))
        else:
            section, item = parsed
            if section == "header" or section not in checker.sections:
                out.append((number, section, None, []))
            else:
                sound, found, cross, plausibility, meets = checker.examine(section, item)
                wire = (
                    sound,
                    found,
                    None if cross is None else tuple(cross),
                    None if plausibility is None else tuple(plausibility),
                    meets,
                )
                out.append((number, section, wire, []))
    return out


def iter_parallel_ndjson(
    stream: LineReader,
    source: str,
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
    jobs: int = 2,
) -> Iterator[Finding]:
    """Findings for an NDJSON feed, checked on ``jobs`` worker processes."""
    global _WORKER
    checker = FeedChecker(profiles, now=now, baseline=baseline)
    lines = iter_lines(stream)
    header_seen = False
    pending: tuple[int, bytes | None] | None = None

    def locate(finding: Finding, number: int) -> Finding:
        return finding if finding.line is not None else replace(finding, line=number, source=source)

    # Serial phase: the header and the declarations that precede the records.
    for number, raw in lines:
        parsed = parse_ndjson_line(number, raw, source)
        if parsed is None:
            continue
        if isinstance(parsed, Finding):
            yield parsed
            continue
        section, item = parsed
        if section == "header" and not header_seen:
            header_seen = True
            for finding in checker.header(item):
                yield locate(finding, number)
            continue
        if not header_seen:
            # A feed that does not start with its header is checked on one core, exactly as
            # the serial reader does, from this line on.
            rest = iter_ndjson_lines(itertools.chain([(number, raw)], lines), source)
            yield from check_parts(rest, profiles, now, baseline)
            return
        if section in DECLARATION_SECTIONS:
            for finding in checker.item(section, item):
                yield locate(finding, number)
            continue
        pending = (number, raw)
        break
    if not header_seen:
        yield syntax("SQM-X004", "the input holds no feed", source)
        return

    if pending is not None:
        sent: deque[list[tuple[int, bytes | None]]] = deque()

        def batches() -> Iterator[list[tuple[int, bytes | None]]]:
            batch: list[tuple[int, bytes | None]] = [pending]
            for entry in lines:
                batch.append(entry)
                if len(batch) >= BATCH_LINES:
                    sent.append(batch)
                    yield batch
                    batch = []
            if batch:
                sent.append(batch)
                yield batch

        known = set(checker.ctx.characteristics)
        _WORKER = checker
        context = multiprocessing.get_context("fork")
        gc.freeze()  # the forked workers share the state so far without the collector copying it
        with context.Pool(jobs, initializer=_start_worker) as pool:
            for results in pool.imap(_examine_batch, batches(), chunksize=1):
                raws = dict(sent.popleft())
                for number, kind, examined, found in results:
                    yield from _settle(
                        checker, known, number, raws[number], kind, examined, found, source
                    )
        _WORKER = None
        gc.unfreeze()
    for finding in checker.finish():
        yield finding


def _settle(
    checker: FeedChecker,
    known: set[str],
    number: int,
    raw: bytes | None,
    section: str | None,
    wire: Wire | None,
    found: list[Finding],
    source: str,
) -> Iterator[Finding]:
    def located(finding: Finding) -> Finding:
        if finding.line is not None and finding.source:
            return finding
        return replace(finding, line=finding.line or number, source=source)

    if section is None or wire is None:
        if section == "header":
            yield syntax("SQM-X007", "a second header line", source, number)
        elif section is not None:
            yield located(checker.unknown_section(section))
        for finding in found:
            yield located(finding)
        return
    sound, findings, cross, plausibility, meets = wire
    examined = Examined(
        sound,
        findings,
        None if cross is None else CrossFacts._make(cross),
        None if plausibility is None else PlausibilityFacts._make(plausibility),
        meets,
    )
    late = len(checker.ctx.characteristics) > len(known)
    if late and section == "capability_records" and raw is not None:
        # A characteristic declared after the workers started is unknown to them: examine
        # a record that refers to it here, where every declaration is known.
        reference = _characteristic_of(raw)
        if (
            reference is not None
            and reference not in known
            and reference in checker.ctx.characteristics
        ):
            examined = checker.examine(section, orjson.loads(raw)[section])
    for finding in checker.settle(section, examined):
        yield located(finding)


def _characteristic_of(raw: bytes) -> str | None:
    item = orjson.loads(raw).get("capability_records")
    reference = item.get("characteristic") if isinstance(item, dict) else None
    return reference if isinstance(reference, str) else None
