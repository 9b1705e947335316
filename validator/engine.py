"""The feed checker: runs every layer over a feed, part by part, in one pass.

Whole documents and streams take the same path: the header, then each item of each section,
then the checks that need the whole feed. Memory is bounded by the layers' compact state, not
by the size of the feed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from sqm.schema import CORE_PROFILE, SchemaError, profile_by_iri, profiles
from sqm.validator import rules
from sqm.validator.context import FeedContext
from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Finding
from sqm.validator.layers import semantics
from sqm.validator.layers.crossrecord import CrossRecordState
from sqm.validator.layers.plausibility import Baseline, PlausibilityState
from sqm.validator.layers.structure import HEADER, StructureChecker, sections_of
from sqm.validator.loaders import Part


class Examined(NamedTuple):
    """The result of :meth:`FeedChecker.examine` (picklable, to cross process boundaries)."""

    sound: bool
    findings: list[Finding]
    cross: tuple[Any, ...] | None  # the fields of a CrossFacts
    plausibility: tuple[Any, ...] | None  # the fields of a PlausibilityFacts
    contains: tuple[tuple[str, str], ...] = ()  # profile requirements this item meets


_examined = Examined._make


# Stands for an item's index in a section until the item is settled in feed order.
PLACEHOLDER = "#"
# Declarations first: records refer to them, and a whole document can be read in any order.
DECLARATION_SECTIONS = ("sites", "products", "characteristics")


# "/<section>/#" for every section, made once.
_PLACED = {section: f"/{section}/{PLACEHOLDER}" for section in sections_of()}


def record_sections() -> list[str]:
    """Every list section of a feed, declarations first."""
    rest = [s for s in sections_of() if s not in DECLARATION_SECTIONS]
    return [*DECLARATION_SECTIONS, *rest]


def requested_profiles(names: Sequence[str]) -> list[str]:
    """Validate profile names given by the caller (not by the feed)."""
    for name in names:
        if name not in profiles():
            known = ", ".join(sorted(p for p in profiles() if p != CORE_PROFILE))
            raise ValidatorError(f"unknown profile {name!r}; known profiles: {known}")
    return [n for n in names if n != CORE_PROFILE]


class FeedChecker:
    """Checks one feed. Call :meth:`header` first, then :meth:`item` per item, then :meth:`finish`."""

    def __init__(
        self,
        profiles: Sequence[str] = (),
        *,
        now: datetime | None = None,
        baseline: Baseline | None = None,
    ) -> None:
        self._requested = requested_profiles(profiles)
        self.ctx = FeedContext(baseline=baseline)
        if now is not None:
            self.ctx.now = now
        self.structure = StructureChecker(self._requested)
        self.cross = CrossRecordState(self.ctx)
        self.plausibility = PlausibilityState(self.ctx)
        self.skeleton: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.sections = set(sections_of())

    def header(self, header: Any) -> Iterator[Finding]:
        """Check the header and adopt the profiles it declares."""
        self.skeleton[HEADER] = {} if isinstance(header, Mapping) else header
        self.ctx.profiles_final = True
        if not isinstance(header, Mapping):
            yield from self.structure.header(header)
            return
        self.ctx.header = dict(header)
        names = list(self._requested)
        declared = header.get("profiles")
        for index, iri in enumerate(declared if isinstance(declared, list) else []):
            if not isinstance(iri, str):
                continue
            try:
                names.append(profile_by_iri(iri).name)
            except SchemaError as exc:
                yield rules.emit("SQM-S012", str(exc), f"/header/profiles/{index}", value=iri)
        self.ctx.profiles = tuple(dict.fromkeys(n for n in names if n != CORE_PROFILE))
        self.structure = StructureChecker(self.ctx.profiles)
        structural = self.structure.header(header)
        yield from structural
        if not structural:
            yield from semantics.check_header(header, self.ctx)
            yield from self.cross.header(header)

    def item(self, section: str, item: Any) -> Iterator[Finding]:
        """Check the next item of ``section``."""
        if section not in self.sections:
            return iter((self.unknown_section(section),))
        return iter(self.settled(section, self.examine(section, item)))

    def unknown_section(self, section: str) -> Finding:
        """The finding for a part whose section the standard does not define."""
        return rules.emit(
            "SQM-S002",
            f"unknown section {section!r}",
            f"/{section}",
            hint="Sections are: " + ", ".join(sorted(self.sections)) + ".",
        )

    def examine(self, section: str, item: Any) -> Examined:
        """Everything about one item that needs no other item: structure, semantics, the
        per-record plausibility checks, and the facts the feed-wide checks will compare.
        Findings are located at ``/<section>/#``; :meth:`settle` puts in the index.

        It changes no feed-wide state, so the parallel validator runs it in worker processes.
        """
        found, meets = self.structure.item(section, PLACEHOLDER, item)
        if not isinstance(item, Mapping):
            return _examined((False, found, None, None, meets))
        at = _PLACED.get(section) or f"/{section}/{PLACEHOLDER}"
        if found:
            cross = self.cross.examine(section, item, at, sound=False)
            return _examined((False, found, cross, None, meets))
        semantics.item_findings(section, item, at, self.ctx, found)
        cross = self.cross.examine(section, item, at, out=found)
        plausibility = None
        if section not in DECLARATION_SECTIONS:
            self.plausibility.record(section, item, at, found)
            plausibility = self.plausibility.examine(section, item)
        return _examined((True, found, cross, plausibility, meets))

    def settle(self, section: str, examined: Examined) -> Iterator[Finding]:
        """Give the examined item its index, then run the checks that need the rest of the
        feed, in feed order."""
        return iter(self.settled(section, examined))

    def settled(self, section: str, examined: Sequence[Any]) -> list[Finding]:
        """:meth:`settle` as a list. ``examined`` is an :class:`Examined` or the plain tuple of
        its fields (as worker processes send it, facts as plain tuples too)."""
        _sound, findings, cross, plausibility, meets = examined
        counts = self.counts
        index = counts.get(section)
        if index is None:
            index = 0
            self.skeleton.setdefault(section, [])
        counts[section] = index + 1
        if meets:
            self.structure.meet(meets)
        out = [_indexed(finding, section, index) for finding in findings] if findings else []
        if cross is not None:
            self.cross.apply_into(cross, section, index, out)
        if plausibility is not None:
            self.plausibility.apply_into(plausibility, section, index, out)
        return out

    def other(self, key: str, value: Any) -> None:
        """A top-level key that is not a list section (reported by :meth:`finish`)."""
        self.skeleton[key] = value

    def finish(self) -> Iterator[Finding]:
        """The checks that need the whole feed (none when nothing was read: the reader has
        already said there is no feed)."""
        if not self.skeleton:
            return
        yield from self.structure.root(self.skeleton)
        yield from self.cross.finish()
        yield from self.plausibility.finish()

    def document(self, document: Mapping[str, Any]) -> Iterator[Finding]:
        """Check a whole feed document."""
        yield from self.header(document.get(HEADER))
        if HEADER not in document:
            self.skeleton.pop(HEADER, None)
        for section in record_sections():
            if section not in document:
                continue
            value = document[section]
            if isinstance(value, list):
                for item in value:
                    yield from self.item(section, item)
                self.skeleton.setdefault(section, [])
            else:
                self.other(section, value)
        for key, value in document.items():
            if key != HEADER and key not in self.sections:
                self.other(key, value)
        yield from self.finish()


def _indexed(finding: Finding, section: str, index: int) -> Finding:
    prefix = f"/{section}/{PLACEHOLDER}"
    pointer = finding.pointer
    if pointer == prefix or pointer.startswith(prefix + "/"):
        pointer = f"/{section}/{index}" + pointer[len(prefix) :]
    return replace(finding, pointer=pointer, record=index)


def _with_record(finding: Finding, index: int) -> Finding:
    return replace(finding, record=index)


def check_document(
    document: Any,
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
) -> Iterator[Finding]:
    """Lazily yield every finding for a parsed feed document."""
    if not isinstance(document, Mapping):
        yield rules.emit("SQM-X002", f"expected a feed object, found {type(document).__name__}", "")
        return
    yield from FeedChecker(profiles, now=now, baseline=baseline).document(document)


def check_parts(
    parts: Iterable[Part | Finding],
    profiles: Sequence[str],
    now: datetime | None,
    baseline: Baseline | None,
) -> Iterator[Finding]:
    """Check a feed given as parts (section, value, location), with syntax findings among
    them passed through, the header first."""
    checker = FeedChecker(profiles, now=now, baseline=baseline)
    for part in parts:
        if isinstance(part, Finding):
            yield part
            continue
        section, value, location = part
        found = checker.header(value) if section == "header" else checker.item(section, value)
        for finding in found:
            yield finding if finding.line is not None else replace(finding, **location)
    yield from checker.finish()
