"""NDJSON feeds, line by line: read in blocks, each line examined on its own, settled in order.

A line goes through two steps. :meth:`NdjsonFeed.examine` parses it and runs every check that
needs no other line (syntax, structure, semantics, per-record plausibility); it changes no
feed-wide state, so worker processes can run it (:mod:`sqm.validator.parallel`).
:meth:`NdjsonFeed.settle` then takes the lines in file order: it gives each item its index,
runs the feed-wide checks against the compact state, and places every finding at its line.
On one core both steps run line after line; the findings are the same either way.

The file is read in blocks of :data:`BLOCK_BYTES`, never a line longer than
:data:`~sqm.validator.loaders.MAX_LINE_BYTES` at once: a longer line is discarded as it is read
and reported (``SQM-X005``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

import orjson

from sqm.validator import loaders
from sqm.validator.engine import FeedChecker
from sqm.validator.findings import Finding
from sqm.validator.layers.plausibility import Baseline
from sqm.validator.loaders import parse_ndjson_line, syntax

BLOCK_BYTES = 256 * 1024

# Numbered lines: the number of the first, the lines without their line feed (None for a line
# over the limit), and whether the last of them ended with a line feed (only the last line of
# a file may not).
Block = tuple[int, list[bytes | None], bool]
# What :meth:`NdjsonFeed.examine` says about a line: None for a blank line, a syntax finding,
# (section, value) for a header line or a section the standard does not have, or
# (section, sound, findings, cross facts, plausibility facts, profile requirements met,
# the characteristic a capability record refers to) for an item.
Entry = Any


class BlockReader(Protocol):
    """What the NDJSON reader needs of a stream."""

    def read(self, size: int = -1, /) -> bytes: ...


def iter_line_blocks(stream: BlockReader, size: int = BLOCK_BYTES) -> Iterator[Block]:
    """The lines of a stream in blocks, numbered from 1, as ``readline`` would split them
    (at line feeds only); a line of more than MAX_LINE_BYTES bytes (line feed excluded) is
    discarded while it is read and given as None."""
    limit = loaders.MAX_LINE_BYTES
    number = 1
    carry: list[bytes] = []  # the start of a line that continues in the next read
    carried = 0
    skipping = False  # inside a line over the limit: discard up to its end
    while True:
        data = stream.read(size)
        if not data:
            break
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                continue
            skipping = False
            data = data[end + 1 :]
            if not data:
                continue
        cut = data.rfind(b"\n")
        if cut < 0:
            carry.append(data)
            carried += len(data)
            if carried > limit:
                yield number, [None], True
                number += 1
                carry, carried, skipping = [], 0, True
            continue
        if carry:
            first_end = data.find(b"\n")
            carry.append(data[:first_end])
            lines = [b"".join(carry)]
            if first_end < cut:
                lines += data[first_end + 1 : cut].split(b"\n")
        else:
            lines = data[:cut].split(b"\n")
        rest = data[cut + 1 :]
        carry, carried = ([rest], len(rest)) if rest else ([], 0)
        if max(map(len, lines)) > limit:
            yield number, [None if len(line) > limit else line for line in lines], True
        else:
            yield number, lines, True  # type: ignore[misc]
        number += len(lines)
    if carry:
        line = b"".join(carry)
        yield number, [None if len(line) > limit else line], False


def read_line(
    number: int, raw: bytes | None, newline: bool, source: str
) -> tuple[str, Any] | Finding | None:
    """:func:`~sqm.validator.loaders.parse_ndjson_line` of a line given without its line feed
    (``newline`` says whether it had one), without its detours for well-formed lines."""
    if raw is not None:
        try:
            value = orjson.loads(raw)
        except Exception:  # every parse error is reported by the slow path
            value = None
        if type(value) is dict and len(value) == 1:
            # orjson keeps the last of duplicate keys silently. A line that its re-serialisation
            # reproduces byte for byte lost nothing (compact lines, as most writers make them);
            # otherwise, as in loaders.loads_line: in a backslash-free line, equal colon counts
            # in the line and in its re-serialisation prove that every key was kept.
            again = orjson.dumps(value)
            if again == raw or (b"\\" not in raw and raw.count(b":") == again.count(b":")):
                for pair in value.items():
                    return pair
    return parse_ndjson_line(number, raw + b"\n" if raw is not None and newline else raw, source)


class NdjsonFeed:
    """One NDJSON feed being checked: the feed checker and what the reader knows of the lines
    so far (whether the header was read, whether a record came before it)."""

    def __init__(
        self,
        source: str,
        profiles: Sequence[str] = (),
        *,
        now: datetime | None = None,
        baseline: Baseline | None = None,
    ) -> None:
        self.source = source
        self.checker = FeedChecker(profiles, now=now, baseline=baseline)
        self.header_seen = False
        self.warned = False  # a part came before the header (reported once)

    def examine(self, number: int, raw: bytes | None, newline: bool) -> Entry:
        """Everything about one line that needs no other line (see :data:`Entry`)."""
        parsed = read_line(number, raw, newline, self.source)
        if parsed is None or type(parsed) is Finding:
            return parsed
        section, item = parsed  # type: ignore[misc]
        checker = self.checker
        if section == "header" or section not in checker.sections:
            return section, item
        sound, findings, cross, plausibility, meets = checker.examine(section, item)
        reference = None
        if section == "capability_records" and sound:
            reference = item.get("characteristic")
        return section, sound, findings, cross, plausibility, meets, reference

    def settle(self, number: int, entry: Entry, out: list[Finding]) -> None:
        """Take an examined line in file order: append its findings, placed at the line."""
        if entry is None:
            return
        if type(entry) is Finding:
            out.append(entry)
            return
        checker = self.checker
        section = entry[0]
        if len(entry) == 7:  # an item: the usual case
            if not self.header_seen:
                self._before_header(number, out)
            found = checker.settled(section, entry[1:6])
            if not found:
                return
        elif len(entry) == 2:
            if section == "header":
                if self.header_seen:
                    out.append(syntax("SQM-X007", "a second header line", self.source, number))
                    return
                self.header_seen = True
                found = list(checker.header(entry[1]))
            else:
                self._before_header(number, out)
                found = [checker.unknown_section(section)]
        for finding in found:
            out.append(
                finding
                if finding.line is not None
                else replace(finding, line=number, source=self.source)
            )

    def _before_header(self, number: int, out: list[Finding]) -> None:
        if not self.header_seen and not self.warned:
            out.append(syntax("SQM-X007", "the first line must be the header", self.source, number))
            self.warned = True  # report once; check the records anyway

    def block(self, block: Block) -> list[Finding]:
        """Examine and settle a block of lines, one after the other."""
        first, lines, newline = block
        out: list[Finding] = []
        last = len(lines) - 1
        examine, settle = self.examine, self.settle
        for offset, raw in enumerate(lines):
            number = first + offset
            settle(number, examine(number, raw, newline or offset < last), out)
        return out

    def finish(self) -> Iterator[Finding]:
        """The findings of the end of the input and of the checks that need the whole feed."""
        if not self.header_seen and not self.warned:
            yield syntax("SQM-X004", "the input holds no feed", self.source)
        yield from self.checker.finish()


def check_ndjson(
    stream: BlockReader,
    source: str,
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
) -> Iterator[Finding]:
    """Lazily yield the findings for an NDJSON feed read from a stream, on one core."""
    feed = NdjsonFeed(source, profiles, now=now, baseline=baseline)
    for block in iter_line_blocks(stream):
        yield from feed.block(block)
    yield from feed.finish()
