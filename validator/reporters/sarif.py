"""SARIF 2.1.0 report for code-scanning tools (OASIS SARIF v2.1.0, sections 3.13-3.27)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from sqm import __version__
from sqm.validator import rules
from sqm.validator.api import ValidationResult
from sqm.validator.findings import Finding, Severity

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
RULES_PAGE = "https://w3id.org/sqm/docs/reference/rules/"
_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _result(finding: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    region: dict[str, Any] = {}
    if finding.line is not None:
        region["startLine"] = finding.line
        if finding.column is not None:
            region["startColumn"] = finding.column
    physical: dict[str, Any] = {"artifactLocation": {"uri": finding.source or ""}}
    if region:
        physical["region"] = region
    location: dict[str, Any] = {"physicalLocation": physical}
    if finding.pointer:
        location["logicalLocations"] = [{"fullyQualifiedName": finding.pointer, "kind": "element"}]
    result: dict[str, Any] = {
        "ruleId": finding.code,
        "ruleIndex": rule_index[finding.code],
        "level": _LEVELS[finding.severity],
        "message": {"text": finding.message + (f" Fix: {finding.hint}" if finding.hint else "")},
        "locations": [location],
    }
    if finding.value is not None:
        result["properties"] = {"value": finding.value}
    return result


def write_sarif(results: Sequence[ValidationResult], out: TextIO, colour: bool) -> None:
    """Write one SARIF log with one run of the SQM validator."""
    del colour
    all_rules = rules.all_rules()
    rule_index = {rule.code: index for index, rule in enumerate(all_rules)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "sqm validate",
                        "version": __version__,
                        "informationUri": "https://w3id.org/sqm",
                        "rules": [
                            {
                                "id": rule.code,
                                "name": rule.code.replace("-", ""),
                                "shortDescription": {"text": rule.title},
                                "fullDescription": {"text": rule.hint},
                                "helpUri": RULES_PAGE + "#" + rule.code.lower(),
                                "defaultConfiguration": {"level": _LEVELS[rule.severity]},
                            }
                            for rule in all_rules
                        ],
                    }
                },
                "artifacts": [{"location": {"uri": r.source}} for r in results],
                "results": [_result(f, rule_index) for r in results for f in r.findings],
            }
        ],
    }
    json.dump(log, out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")
