"""RDF input (Turtle, JSON-LD): the graph is checked with the standard's SHACL shapes.

SHACL is the RDF-native check of the standard; it is slow (tens of records per second) and
meant for per-supplier graphs and samples, not bulk feeds, which belong in NDJSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqm.schema import CORE_PROFILE, class_uris, rdf
from sqm.validator import rules
from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Finding
from sqm.validator.layers.plausibility import Baseline
from sqm.validator.loaders import MAX_DOCUMENT_BYTES, syntax

FORMATS = {".ttl": "turtle", ".jsonld": "json-ld"}


def _shacl_finding(violation: rdf.ShaclViolation, source: str) -> Finding:
    rule = rules.get("SQM-S013")
    where = violation.focus_node + (f" {violation.path}" if violation.path else "")
    return Finding(
        "SQM-S013",
        rule.severity,
        f"{violation.message} ({where})",
        "",
        rule.hint,
        violation.value,
        None,
        None,
        None,
        source,
    )


def rdf_findings(
    path: Path,
    profiles: Sequence[str] = (),
    *,
    now: datetime | None = None,
    baseline: Baseline | None = None,
) -> Iterator[Finding]:
    """SHACL findings for an RDF feed against the core and each requested profile."""
    del now, baseline  # the time and jump rules need the JSON form of a feed
    import rdflib

    source = str(path)
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            yield syntax("SQM-X006", "the graph is too large for SHACL validation", source)
            return
        graph: Any = rdflib.Graph().parse(path, format=FORMATS[path.suffix.lower()])
    except OSError as exc:
        raise ValidatorError(f"{path}: cannot be read: {exc.strerror}") from exc
    except Exception as exc:
        yield syntax("SQM-X008", f"cannot parse {FORMATS[path.suffix.lower()]}: {exc}", source)
        return
    feed_type = rdflib.URIRef(class_uris()["Feed"])
    if not any(graph.subjects(rdflib.RDF.type, feed_type)):
        yield syntax("SQM-X008", "the graph has no node of type sqm:Feed", source)
        return
    for name in (CORE_PROFILE, *profiles):
        for violation in rdf.shacl_violations(graph, name):
            yield _shacl_finding(violation, source)
