"""The public API: validate a feed and iterate over its findings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqm.validator import loaders
from sqm.validator.engine import check_document, check_parts, requested_profiles
from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Finding, Severity
from sqm.validator.layers.plausibility import Baseline
from sqm.validator.loaders import (
    NDJSON_SUFFIXES,
    RDF_SUFFIXES,
    Loaded,
    Part,
    iter_csv,
    iter_ndjson,
    load_path,
    load_text_document,
    loads_strict,
    read_bounded,
)
from sqm.validator.ndjson import BlockReader, check_ndjson
from sqm.validator.positions import json_positions, nearest, yaml_positions

Source = Path | str | Mapping[str, Any]


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_shaped(value: Any) -> Any:
    """Parsed data as JSON would give it: dates and times as RFC 3339 text, Decimals as
    numbers, tuples as lists (YAML and ``json.loads(parse_float=Decimal)`` produce these)."""
    # Exact types first: what json.loads gives takes no abstract-class checks, which were
    # half of validating a submitted feed (``isinstance`` against ``Mapping`` walks the ABC
    # registry for every scalar).
    kind = type(value)
    if kind in _JSON_SCALARS:
        return value
    if kind is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in _JSON_SCALARS else json_shaped(v)
            for k, v in value.items()
        }
    if kind is list:
        return [v if type(v) in _JSON_SCALARS else json_shaped(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_shaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_shaped(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _placed(loaded: Loaded, findings: Iterator[Finding]) -> Iterator[Finding]:
    """Attach the source and, for JSON and YAML text, the line and column of each finding."""
    positions: dict[str, tuple[int, int]] | None = None
    for finding in findings:
        if finding.line is None and loaded.text is not None:
            if positions is None:
                scan = yaml_positions if loaded.kind == "yaml" else json_positions
                positions = scan(loaded.text)
            found = nearest(positions, finding.pointer)
            if found is not None:
                finding = replace(finding, line=found[0], column=found[1])
        yield finding if finding.source else replace(finding, source=loaded.source)


def iter_findings(
    source: Source,
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
    jobs: int = 1,
) -> Iterator[Finding]:
    """Lazily yield the findings for a feed: a path (JSON, YAML, NDJSON, RDF, CSV folder) or
    already-parsed data. ``now`` fixes the clock for time checks; ``baseline`` is the
    previous feed (see :func:`load_baseline`); ``jobs`` > 1 checks an NDJSON feed on that many
    worker processes, with the same findings."""
    requested_profiles(profiles)
    if isinstance(source, Mapping):
        # Parsed data comes with no parser's guard against nesting: a few kilobytes of
        # objects inside objects exhaust the interpreter's stack in the checks that walk them
        # (a registry answered such a signed feed with a 500). Caught once, at no cost to
        # any other feed: no SQM feed nests more than a few levels.
        try:
            yield from check_document(json_shaped(source), profiles, now=now, baseline=baseline)
        except RecursionError:
            yield loaders.syntax(
                "SQM-X001",
                "the feed nests objects or arrays too deeply to check (hundreds of levels); "
                "no SQM feed needs more than a few",
                "",
            )
        return
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_dir():
        yield from check_parts(iter_csv(path), profiles, now, baseline)
    elif suffix in NDJSON_SUFFIXES:
        try:
            with path.open("rb") as stream:
                if jobs > 1:
                    from sqm.validator.parallel import iter_parallel_ndjson

                    yield from iter_parallel_ndjson(
                        stream, str(path), profiles, now=now, baseline=baseline, jobs=jobs
                    )
                    return
                yield from check_ndjson(stream, str(path), profiles, now=now, baseline=baseline)
        except OSError as exc:
            raise ValidatorError(f"{path}: cannot be read: {exc.strerror}") from exc
    elif suffix in RDF_SUFFIXES:
        from sqm.validator.rdf_input import rdf_findings

        yield from rdf_findings(path, profiles, now=now, baseline=baseline)
    else:
        loaded = load_path(path)
        yield from _document_findings(loaded, profiles, now, baseline)


def _document_findings(
    loaded: Loaded, profiles: Sequence[str], now: datetime | None, baseline: Baseline | None
) -> Iterator[Finding]:
    if not loaded.ok:
        yield from loaded.findings
        return
    found = check_document(loaded.document, profiles, now=now, baseline=baseline)
    yield from _placed(loaded, found)


def iter_stream_findings(
    stream: IO[bytes],
    source: str = "<stdin>",
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
) -> Iterator[Finding]:
    """Findings for a feed read from a binary stream: NDJSON when its first line is a header
    line, otherwise one JSON or YAML document."""
    requested_profiles(profiles)
    # Peek at the first line, keeping its bytes: a long one is the start of a JSON document.
    head = stream.readline(loaders.MAX_LINE_BYTES + 1)
    if head.endswith(b"\n") and _is_header_line(head):
        replay = _Replay(head, stream)
        yield from check_ndjson(replay, source, profiles, now=now, baseline=baseline)
        return
    rest = read_bounded(stream, source, already=len(head))
    if isinstance(rest, Loaded):
        yield from rest.findings
        return
    loaded = load_text_document(head + rest, source, "")
    yield from _document_findings(loaded, profiles, now, baseline)


def iter_ndjson_findings(
    stream: BlockReader,
    source: str,
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
) -> Iterator[Finding]:
    """Findings for an NDJSON feed read from a stream, on one core."""
    requested_profiles(profiles)
    yield from check_ndjson(stream, source, profiles, now=now, baseline=baseline)


def _is_header_line(line: bytes) -> bool:
    try:
        value = loads_strict(line)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return False
    return isinstance(value, dict) and list(value) == ["header"]


class _Replay:
    """A binary stream with one line put back in front."""

    def __init__(self, first: bytes, stream: IO[bytes]) -> None:
        self._first: bytes | None = first
        self._stream = stream

    def readline(self, size: int = -1) -> bytes:
        if self._first is not None:
            line, self._first = self._first, None
            return line
        return self._stream.readline(size)

    def read(self, size: int = -1) -> bytes:
        if self._first is not None:
            data, self._first = self._first, None
            return data
        return self._stream.read(size)


def _parts_of(path: Path) -> Iterator[Part | Finding]:
    """Any feed file or CSV folder as parts (for reading a baseline)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        yield from iter_csv(path)
        return
    if suffix in RDF_SUFFIXES:
        raise ValidatorError(f"{path}: a baseline must be JSON, YAML, NDJSON or a CSV feed folder")
    if suffix in NDJSON_SUFFIXES:
        try:
            with path.open("rb") as stream:
                yield from iter_ndjson(stream, str(path))
        except OSError as exc:
            raise ValidatorError(f"{path}: cannot be read: {exc.strerror}") from exc
        return
    loaded = load_path(path)
    if not loaded.ok:
        yield from loaded.findings
        return
    document = loaded.document
    yield "header", document.get("header"), {}
    for section, items in document.items():
        if section != "header" and isinstance(items, list):
            for item in items:
                yield section, item, {}


def load_baseline(path: Path) -> Baseline:
    """The previous feed, reduced to what the jump checks compare; ValidatorError when it cannot
    be read."""
    baseline = Baseline()
    for part in _parts_of(path):
        if isinstance(part, Finding):
            raise ValidatorError(f"baseline {path}: {part.message}")
        if isinstance(part[1], Mapping):
            baseline.add(part[0], part[1])
    return baseline


@dataclass
class ValidationResult:
    """All findings for one feed, with the verdict."""

    source: str
    findings: list[Finding] = field(default_factory=list)
    # Findings left out of ``findings`` by a limit, per severity: still counted, never hidden.
    omitted: dict[str, int] = field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        """True when no finding is an error (shown or omitted)."""
        shown = any(f.severity is Severity.ERROR for f in self.findings)
        return not shown and not self.omitted.get(Severity.ERROR.value)

    def counts(self) -> dict[str, int]:
        """Findings per severity."""
        result = {s.value: self.omitted.get(s.value, 0) for s in Severity}
        for finding in self.findings:
            result[finding.severity.value] += 1
        return result

    def best_match(self) -> Finding | None:
        """The most relevant finding: the most severe, then the shallowest location."""
        return best_match(self.findings)


def best_match(findings: Sequence[Finding]) -> Finding | None:
    """Like jsonschema's ``best_match``: most severe first, then least deeply nested."""
    if not findings:
        return None
    return min(findings, key=lambda f: (-f.severity.rank, f.pointer.count("/"), f.code))


def check_organization(organization: Any, at: str = "") -> list[Finding]:
    """Findings for an organisation (a supplier, certification body or auditor) on its own:
    the core schema's Organization, its identifiers' check digits and its country code, with
    pointers under ``at`` (a JSON pointer). The registry checks identities it registers so."""
    from sqm.validator.layers.semantics import check_party
    from sqm.validator.layers.structure import organization_findings

    prefix = at.split("/")[1:] if at else []
    found = organization_findings(organization, prefix)
    if isinstance(organization, Mapping):
        check_party(organization, at, found)
    return found


def validate(
    source: Source,
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
    max_findings: int | None = None,
) -> ValidationResult:
    """Validate a feed (a path or parsed data) against the core and its profiles."""
    name = "<data>" if isinstance(source, Mapping) else str(source)
    found = iter_findings(source, profiles, now=now, baseline=baseline)
    return collect(found, name, max_findings)


def collect(
    findings: Iterable[Finding], source: str, max_findings: int | None = None
) -> ValidationResult:
    """Gather findings into a result, keeping at most ``max_findings`` (the rest are counted)."""
    result = ValidationResult(source)
    for finding in findings:
        if max_findings is None or len(result.findings) < max_findings:
            result.findings.append(finding)
        else:
            severity = finding.severity.value
            result.omitted[severity] = result.omitted.get(severity, 0) + 1
    return result
