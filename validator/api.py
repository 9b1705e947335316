"""The public API: validate a feed and iterate over its findings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqm.schema import CORE_PROFILE, SchemaError, profile_by_iri, profiles
from sqm.validator import rules
from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Finding, Severity
from sqm.validator.layers.structure import structure_findings
from sqm.validator.loaders import Loaded, load_path

RECORD_SECTIONS = (
    "sites",
    "products",
    "characteristics",
    "capability_records",
    "defect_rate_records",
    "delivery_records",
    "lead_time_records",
    "traceability_records",
    "carbon_footprint_records",
    "energy_records",
    "water_records",
    "recycled_content_records",
    "service_level_records",
    "certification_records",
)


def _resolve_profiles(
    document: Mapping[str, Any], requested: Sequence[str]
) -> tuple[list[str], list[Finding]]:
    names: list[str] = []
    findings: list[Finding] = []
    for name in requested:
        if name not in profiles():
            known = ", ".join(sorted(p for p in profiles() if p != CORE_PROFILE))
            raise ValidatorError(f"unknown profile {name!r}; known profiles: {known}")
        names.append(name)
    header = document.get("header")
    declared = header.get("profiles") if isinstance(header, Mapping) else None
    if isinstance(declared, list):
        for index, iri in enumerate(declared):
            if not isinstance(iri, str):
                continue  # the structure layer reports the type
            try:
                names.append(profile_by_iri(iri).name)
            except SchemaError as exc:
                rule = rules.get("SQM-S012")
                findings.append(
                    Finding(
                        "SQM-S012",
                        rule.severity,
                        str(exc),
                        f"/header/profiles/{index}",
                        rule.hint,
                        iri,
                    )
                )
    return list(dict.fromkeys(n for n in names if n != CORE_PROFILE)), findings


def iter_document_findings(
    document: Any, profiles_requested: Sequence[str] = ()
) -> Iterator[Finding]:
    """Lazily yield the findings for an already-parsed feed document."""
    if not isinstance(document, Mapping):
        rule = rules.get("SQM-X002")
        yield Finding(
            "SQM-X002",
            rule.severity,
            f"expected a feed object, found {type(document).__name__}",
            "",
            rule.hint,
        )
        return
    names, profile_findings = _resolve_profiles(document, profiles_requested)
    yield from profile_findings
    yield from structure_findings(document, names, record_sections=RECORD_SECTIONS)


def iter_findings(
    source: Path | str | Mapping[str, Any], profiles: Sequence[str] = ()
) -> Iterator[Finding]:
    """Lazily yield the findings for a feed given as a path or as parsed data."""
    if isinstance(source, Mapping):
        yield from iter_document_findings(source, profiles)
        return
    loaded = load_path(Path(source))
    yield from _with_source(loaded, profiles)


def _with_source(loaded: Loaded, profiles: Sequence[str]) -> Iterator[Finding]:
    if not loaded.ok:
        yield from loaded.findings
        return
    for finding in iter_document_findings(loaded.document, profiles):
        yield finding if finding.source else _replace_source(finding, loaded.source)


def _replace_source(finding: Finding, source: str) -> Finding:
    from dataclasses import replace

    return replace(finding, source=source)


@dataclass
class ValidationResult:
    """All findings for one feed, with the verdict."""

    source: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        """True when no finding is an error."""
        return not any(f.severity is Severity.ERROR for f in self.findings)

    def counts(self) -> dict[str, int]:
        """Findings per severity."""
        result = {s.value: 0 for s in Severity}
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


def validate(
    source: Path | str | Mapping[str, Any], profiles: Sequence[str] = ()
) -> ValidationResult:
    """Validate a feed (a path or parsed data) against the core and its profiles."""
    name = "<data>" if isinstance(source, Mapping) else str(source)
    return ValidationResult(name, list(iter_findings(source, profiles)))
