"""The rule registry: every rule code the validator can emit, defined once.

Codes are stable: a code, once published, keeps its meaning; a retired rule keeps its code
reserved. The letter says the layer: X syntax, S structure, E semantics, R cross-record,
P plausibility. The rules page (docs/reference/rules.md) is rendered from this registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Severity


@dataclass(frozen=True)
class Rule:
    """A rule: its stable code, default severity, layer, and its documentation."""

    code: str
    severity: Severity
    layer: str
    title: str
    hint: str
    failing: str
    passing: str


LAYERS = {
    "X": "syntax",
    "S": "structure",
    "E": "semantics",
    "R": "cross-record",
    "P": "plausibility",
}

_RULES: dict[str, Rule] = {}


def _rule(code: str, severity: Severity, title: str, hint: str, failing: str, passing: str) -> None:
    if code in _RULES:
        raise ValidatorError(f"rule {code} defined twice")
    _RULES[code] = Rule(
        code, severity, LAYERS[code[4]], title, hint, failing.strip(), passing.strip()
    )


E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

# --- syntax: the bytes cannot be read as a feed ----------------------------------------------
_rule(
    "SQM-X001",
    E,
    "The input cannot be parsed",
    "Fix the syntax at the line and column given; JSON needs double quotes and no trailing commas.",
    '{"header": {"sqm_version": "0.1",}}',
    '{"header": {"sqm_version": "0.1"}}',
)
_rule(
    "SQM-X002",
    E,
    "The input is not a feed object",
    "A feed is one JSON object (or YAML mapping) with a header; an array or a scalar is not.",
    '[{"header": {}}]',
    '{"header": {}}',
)
_rule(
    "SQM-X003",
    E,
    "The input is not UTF-8 text",
    "Save the file as UTF-8 (a byte-order mark is accepted).",
    "(bytes in Latin-1 or UTF-16)",
    "(the same text saved as UTF-8)",
)
_rule(
    "SQM-X004",
    E,
    "The input is empty",
    "Publish a feed with at least a header.",
    "(an empty file)",
    '{"header": {}}',
)

# --- structure: the generated JSON Schema, core and profiles -----------------------------------
_rule(
    "SQM-S001",
    E,
    "A required field is missing",
    "Add the field; the schema reference says what it holds.",
    """
capability_records:
  - id: cap-1
    characteristic: char-bore
    # sample_size is missing
""",
    """
capability_records:
  - id: cap-1
    characteristic: char-bore
    sample_size: 125
""",
)
_rule(
    "SQM-S002",
    E,
    "A field the standard does not define",
    "Check the spelling against the schema reference; SQM objects are closed, so a misspelt "
    "field would otherwise be silently ignored.",
    "delivery_records:\n  - on_time_pct: 98.4",
    "delivery_records:\n  - on_time_percent: 98.4",
)
_rule(
    "SQM-S003",
    E,
    "A value of the wrong type",
    "Write numbers as JSON numbers (not strings), text as strings, lists as lists.",
    'capability_records:\n  - cpk: "1.52"',
    "capability_records:\n  - cpk: 1.52",
)
_rule(
    "SQM-S004",
    E,
    "A value outside its code list",
    "Use one of the listed codes exactly as written (codes are case-sensitive).",
    "capability_records:\n  - distribution: gaussian",
    "capability_records:\n  - distribution: normal",
)
_rule(
    "SQM-S005",
    E,
    "A value that does not match its pattern",
    "Write the value in the format the field describes (an LEI is 20 characters, a country two "
    "upper-case letters).",
    "sites:\n  - address: {country: Germany}",
    "sites:\n  - address: {country: DE}",
)
_rule(
    "SQM-S006",
    E,
    "A number outside its allowed range",
    "Percentages run from 0 to 100, counts and sigmas are not negative, p-values lie in 0..1.",
    "delivery_records:\n  - on_time_percent: 104",
    "delivery_records:\n  - on_time_percent: 98.4",
)
_rule(
    "SQM-S007",
    E,
    "A date, time or URI that is not well formed",
    "Timestamps are RFC 3339 with a time zone (2026-10-01T00:00:00+01:00); dates are YYYY-MM-DD.",
    'period: {start: "01.10.2026"}',
    'period: {start: "2026-10-01T00:00:00+01:00"}',
)
_rule(
    "SQM-S008",
    E,
    "None of the alternatives that the record needs is present",
    "Give at least one of the listed fields (a capability record needs Cpk or Ppk; a defect "
    "record needs ppm, DPMO or first-pass yield).",
    "capability_records:\n  - id: cap-1\n    cp: 1.6",
    "capability_records:\n  - id: cap-1\n    cp: 1.6\n    cpk: 1.52",
)
_rule(
    "SQM-S009",
    E,
    "A conditional requirement of the standard is not met",
    "When a field has a certain value, others become required or constrained (an LEI identifier "
    "needs the LEI format; a ppm rate needs its defective count; a PPAP study needs Ppk).",
    "identifiers:\n  - {scheme: LEI, code: 12345}",
    "identifiers:\n  - {scheme: LEI, code: 529900SQMKRAFTWERK41}",
)
_rule(
    "SQM-S010",
    E,
    "A profile requires an item the feed does not have",
    "Add the required item (the automotive profile requires an IATF 16949 certificate), or do "
    "not declare the profile.",
    "header: {profiles: [https://w3id.org/sqm/v0.1/profiles/automotive]}\n"
    "certification_records:\n  - scheme: ISO_9001",
    "header: {profiles: [https://w3id.org/sqm/v0.1/profiles/automotive]}\n"
    "certification_records:\n  - scheme: IATF_16949",
)
_rule(
    "SQM-S011",
    E,
    "A list is shorter or longer than allowed",
    "Give at least the required number of entries.",
    "sites:\n  - roles: []",
    "sites:\n  - roles: [manufacturing]",
)
_rule(
    "SQM-S012",
    E,
    "The feed declares a profile this validator does not know",
    "Declare profiles by their IRI exactly as published (see the profiles page), or remove it.",
    "header: {profiles: [https://example.org/profiles/aerospace]}",
    "header: {profiles: [https://w3id.org/sqm/v0.1/profiles/automotive]}",
)


def get(code: str) -> Rule:
    """The rule with this code."""
    try:
        return _RULES[code]
    except KeyError:
        raise ValidatorError(f"unknown rule code {code!r}") from None


def all_rules() -> list[Rule]:
    """Every rule, in code order."""
    return [_RULES[code] for code in sorted(_RULES)]


def rules_markdown() -> str:
    """The rules page for the docs, rendered from the registry."""
    lines = [
        "# Validator rules",
        "",
        "<!-- Rendered from sqm/validator/rules.py by `sqm rules --markdown`; do not edit. -->",
        "",
        "Every finding carries one of these stable codes. The letter after `SQM-` names the layer:",
        ", ".join(f"`{k}` {v}" for k, v in LAYERS.items()) + ".",
        "",
        "| code | severity | layer | rule |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| [{r.code}](#{r.code.lower()}) | {r.severity.value} | {r.layer} | {r.title} |"
        for r in all_rules()
    ]
    for r in all_rules():
        lines += [
            "",
            f"## {r.code}",
            "",
            f"**{r.title}** ({r.severity.value}, {r.layer}).",
            "",
            r.hint,
            "",
            "Fails:",
            "",
            "```yaml",
            r.failing,
            "```",
            "",
            "Passes:",
            "",
            "```yaml",
            r.passing,
            "```",
        ]
    return "\n".join(lines) + "\n"
