"""The rule registry: every rule code the validator can emit, defined once.

Codes are stable: a code, once published, keeps its meaning; a retired rule keeps its code
reserved. The letter says the layer: X syntax, S structure, E semantics, R cross-record,
P plausibility. The rules page (docs/reference/rules.md) is rendered from this registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Finding, Severity


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
    "Add the item the profile requires (the automotive profile, for example, requires an IATF "
    "16949 certificate), or do not declare the profile.",
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

_rule(
    "SQM-X005",
    E,
    "A line of an NDJSON feed is too long",
    "Split the record or publish it in the whole-document JSON form; lines are limited to "
    "16 MiB so that the validator's memory stays bounded.",
    "(one 2 GB line)",
    "(one record per line, each well under 16 MiB)",
)
_rule(
    "SQM-X006",
    E,
    "A whole-document feed is too large",
    "Publish large feeds as NDJSON (one record per line), which is streamed; JSON and YAML "
    "documents are read whole and limited to 256 MiB.",
    "(a 3 GB feed.json)",
    "(the same records as feed.ndjson)",
)
_rule(
    "SQM-X007",
    E,
    "An NDJSON line is not a header or a single-section record",
    'The first line is {"header": {...}}; every other line is {"<section>": {...}} with one '
    "section name such as capability_records.",
    '{"id": "cap-1", "cpk": 1.5}',
    '{"capability_records": {"id": "cap-1", "cpk": 1.5}}',
)
_rule(
    "SQM-X008",
    E,
    "RDF input that cannot be read or has no feed",
    "Check the Turtle or JSON-LD syntax; the graph must contain exactly one sqm:Feed.",
    "(a Turtle file with a missing dot)",
    "(the SHACL-valid graph of a feed)",
)

# --- semantics: what one record must satisfy beyond the schema ---------------------------------
_rule(
    "SQM-E001",
    E,
    "A unit that cannot measure this metric",
    "Use a unit of the right kind: time for lead times, energy for energy, volume for water, "
    "percent (P1) for percentage objectives.",
    "quoted_lead_time: {value: 15, unit: KGM}",
    "quoted_lead_time: {value: 15, unit: DAY}",
)
_rule(
    "SQM-E002",
    E,
    "The lower specification limit is not below the upper one",
    "Swap or correct the limits; LSL must be below USL.",
    "characteristics:\n  - {lower_spec_limit: 12.018, upper_spec_limit: 12.000}",
    "characteristics:\n  - {lower_spec_limit: 12.000, upper_spec_limit: 12.018}",
)
_rule(
    "SQM-E003",
    E,
    "Cpk above Cp, or Ppk above Pp",
    "Cpk = Cp only for a perfectly centred process and is otherwise smaller; recompute both "
    "from the same data.",
    "{cp: 1.40, cpk: 1.52}",
    "{cp: 1.58, cpk: 1.52}",
)
_rule(
    "SQM-E004",
    E,
    "Capability indices inconsistent with the limits, mean and sigma given",
    "Recompute: Cp = (USL - LSL) / 6 sigma_within, Cpk = min(USL - mean, mean - LSL) / "
    "3 sigma_within; Pp and Ppk the same with sigma_overall.",
    "{process_mean: 12.009, sigma_within: 0.0019, cpk: 2.10}   # limits 12.000..12.018",
    "{process_mean: 12.009, sigma_within: 0.0019, cpk: 1.58}",
)
_rule(
    "SQM-E005",
    E,
    "Cp or Pp stated for a one-sided specification",
    "Cp and Pp need both limits; for a one-sided limit state Cpk or Ppk only.",
    "characteristic with only upper_spec_limit, record with cp: 1.6",
    "characteristic with only upper_spec_limit, record with cpk: 1.82",
)
_rule(
    "SQM-E006",
    E,
    "Counts that contradict each other",
    "The defective count cannot exceed the inspected count (nor rejected lots the received "
    "lots, nor categorised defects the total).",
    "{inspected_count: 1000, defective_count: 1200}",
    "{inspected_count: 1000, defective_count: 12}",
)
_rule(
    "SQM-E007",
    E,
    "A rate that does not follow from its counts",
    "ppm = defective_count / inspected_count x 10^6; DPMO = defect_count / (inspected_count x "
    "opportunities_per_unit) x 10^6; recompute or correct the counts.",
    "{inspected_count: 412300, defective_count: 7, ppm: 1.7}",
    "{inspected_count: 412300, defective_count: 7, ppm: 16.98}",
)
_rule(
    "SQM-E008",
    E,
    "OTIF above on-time or in-full",
    "An order line that is on time and in full is both; OTIF cannot exceed either percentage.",
    "{on_time_percent: 95.0, in_full_percent: 99.0, otif_percent: 97.0}",
    "{on_time_percent: 95.0, in_full_percent: 99.0, otif_percent: 94.4}",
)
_rule(
    "SQM-E009",
    E,
    "A period that ends before it starts",
    "The start must be before the end.",
    "period: {start: 2026-11-01T00:00:00Z, end: 2026-10-01T00:00:00Z, ...}",
    "period: {start: 2026-10-01T00:00:00Z, end: 2026-11-01T00:00:00Z, ...}",
)
_rule(
    "SQM-E010",
    E,
    "A time in the future",
    "Measurement periods, as-of times and issue times cannot lie in the future; check the "
    "time zone offset.",
    "as_of: 2031-01-01T00:00:00Z",
    "as_of: 2026-11-02T06:15:00+01:00",
)
_rule(
    "SQM-E011",
    E,
    "Times that are out of order within a record",
    "as_of cannot precede the start of the period it reports; next_update_due must follow as_of.",
    "{as_of: 2026-11-02T00:00:00Z, next_update_due: 2026-10-01T00:00:00Z}",
    "{as_of: 2026-11-02T00:00:00Z, next_update_due: 2026-12-03T00:00:00Z}",
)
_rule(
    "SQM-E012",
    E,
    "A certificate's status contradicts its dates",
    "An active certificate must be within its validity on the record's as-of date; one past "
    "valid_until is expired; issued_on and valid_from cannot be after valid_until.",
    "{status: active, valid_until: 2025-05-31}   # as_of 2026-10-01",
    "{status: expired, valid_until: 2025-05-31}",
)
_rule(
    "SQM-E013",
    E,
    "A country code that ISO 3166-1 does not assign",
    "Use an assigned ISO 3166-1 alpha-2 code (GB, not UK; DE, not GE).",
    "address: {country: UK}",
    "address: {country: GB}",
)
_rule(
    "SQM-E015",
    E,
    "An LEI whose check digits are wrong",
    "Copy the LEI from GLEIF; the last two digits are an ISO 7064 mod 97-10 checksum.",
    "{scheme: LEI, code: 529900SQMKRAFTWERK42}",
    "{scheme: LEI, code: 529900SQMKRAFTWERK41}",
)
_rule(
    "SQM-E016",
    E,
    "A GLN or GTIN whose check digit is wrong",
    "Copy the number from GS1; the last digit is a GS1 mod-10 check digit.",
    "{scheme: GLN, code: 4001234000001}",
    "{scheme: GLN, code: 4001234000008}",
)
_rule(
    "SQM-E017",
    E,
    "Distribution statistics out of order",
    "minimum <= median <= p95 <= maximum, and the mean lies between minimum and maximum.",
    "actual_lead_time: {median: 21, p95: 18, unit: DAY}",
    "actual_lead_time: {median: 21, p95: 35, unit: DAY}",
)
_rule(
    "SQM-E018",
    E,
    "Parts that add up to more than their whole",
    "Pre- and post-consumer shares cannot exceed the recycled content; upstream supply shares "
    "cannot exceed 100 percent.",
    "{recycled_content_percent: 40, pre_consumer_percent: 30, post_consumer_percent: 28}",
    "{recycled_content_percent: 68, pre_consumer_percent: 40, post_consumer_percent: 28}",
)
_rule(
    "SQM-E019",
    E,
    "An SLA status that contradicts its attainment",
    "The status must follow from the objective: attainment 96.3 against >= 97 is breached.",
    "{objective: {operator: gte, target_value: 97}, attainment: 96.3, attainment_status: met}",
    "{objective: {operator: gte, target_value: 97}, attainment: 96.3, attainment_status: breached}",
)
_rule(
    "SQM-E020",
    W,
    "Sample size does not equal subgroup size times subgroup count",
    "For equal subgroups n = subgroup_size x subgroup_count; check the counts.",
    "{sample_size: 125, subgroup_size: 5, subgroup_count: 20}",
    "{sample_size: 125, subgroup_size: 5, subgroup_count: 25}",
)
_rule(
    "SQM-E021",
    W,
    "A nominal or target outside the specification limits",
    "The nominal and the target normally lie between LSL and USL.",
    "{lower_spec_limit: 12.000, upper_spec_limit: 12.018, nominal: 12.05}",
    "{lower_spec_limit: 12.000, upper_spec_limit: 12.018, nominal: 12.009}",
)

# --- cross-record: the feed as a whole --------------------------------------------------------
_rule(
    "SQM-R001",
    E,
    "Two items share a local id",
    "Local ids identify items across the whole feed; give each item its own.",
    "sites: [{id: site-1}, {id: site-1}]",
    "sites: [{id: site-1}, {id: site-2}]",
)
_rule(
    "SQM-R002",
    E,
    "A reference to a site, product or characteristic the feed does not declare",
    "Declare the item in sites, products or characteristics, or fix the id.",
    "capability_records:\n  - site: site-stutgart",
    "capability_records:\n  - site: site-stuttgart",
)
_rule(
    "SQM-R003",
    W,
    "Two records claim the same metric for the same subject and period",
    "Publish one record per subject and period, or give them different periods.",
    "two capability_records for char-bore over the same period",
    "one capability record per characteristic and period",
)
_rule(
    "SQM-R004",
    E,
    "The feed sequence is broken",
    "Every feed after the first names its predecessor in previous_feed, whose sequence is "
    "one less than this feed's.",
    "header: {sequence: 14, previous_feed: {sequence: 12, ...}}",
    "header: {sequence: 14, previous_feed: {sequence: 13, ...}}",
)
_rule(
    "SQM-R005",
    E,
    "A capability record for a characteristic of another product",
    "The record's product must be the characteristic's product (or left out).",
    "{characteristic: char-p100-bore, product: prod-p220}",
    "{characteristic: char-p100-bore, product: prod-p100}",
)
_rule(
    "SQM-R006",
    E,
    "Automotive: a special characteristic without a PPAP-complete capability record",
    "Every critical or significant characteristic needs a capability record with Ppk, a "
    "normality test, at least 100 measurements and at least 25 subgroups.",
    "characteristic class critical, capability record with sample_size 50",
    "characteristic class critical, capability record with sample_size 125, subgroup_count 25",
)
_rule(
    "SQM-R007",
    E,
    "Automotive: no IATF 16949 certificate active on the feed's issue date",
    "An automotive feed needs an IATF 16949 certificate that is active and valid when the "
    "feed is issued.",
    "certification_records: [{scheme: IATF_16949, status: suspended}]",
    "certification_records: [{scheme: IATF_16949, status: active, valid_until: 2027-06-30}]",
)

# --- plausibility: numbers that are possible but not credible ---------------------------------
_rule(
    "SQM-P001",
    W,
    "A defect rate far better than the claimed capability allows",
    "Under the stated normal model the capability implies more nonconforming parts than "
    "reported; check both numbers, the counting rule and the detection point.",
    "Ppk 0.90 (about 3,500 ppm expected) but in-process ppm 12 over 400,000 parts",
    "Ppk 1.60 (about 1 ppm expected) and in-process ppm 12",
)
_rule(
    "SQM-P002",
    INFO,
    "A defect rate far worse than the declared capability implies",
    "Other failure modes than the declared characteristics drive the defect rate, or the "
    "capability is overstated.",
    "all characteristics Cpk >= 1.5 (under 10 ppm) but in-process ppm 14,000",
    "in-process ppm consistent with the declared characteristics",
)
_rule(
    "SQM-P003",
    W,
    "A sample too small for the precision claimed",
    "Capability from fewer than 30 measurements is not credible; a claimed lower confidence "
    "bound must not exceed what the sample size supports (Bissell).",
    "{cpk: 1.67, sample_size: 20}",
    "{cpk: 1.67, sample_size: 125}",
)
_rule(
    "SQM-P004",
    W,
    "Suspiciously perfect data",
    "Zero variance, or values identical to the last digit across periods, are what copied or "
    "synthetic data look like; publish the measured values.",
    "{sigma_within: 0, cpk: 99}",
    "{sigma_within: 0.0019, cpk: 1.54}",
)
_rule(
    "SQM-P005",
    W,
    "An implausible jump against the previous feed",
    "A capability index, defect rate or delivery percentage changed far more than processes "
    "change between two periods; check the data or explain it in notes.",
    "Cpk 0.95 in the previous feed, 2.40 now",
    "Cpk 1.48 in the previous feed, 1.54 now",
)
_rule(
    "SQM-P006",
    W,
    "Stale data",
    "The record is past its next_update_due (or its as_of plus update_interval): publish a "
    "current value.",
    "{as_of: 2025-01-01T00:00:00Z, update_interval: P1M}",
    "{as_of: 2026-11-02T00:00:00Z, update_interval: P1M}",
)
_rule(
    "SQM-P007",
    W,
    "Capability computed under a model the data rejected",
    "The normality test failed but the indices assume a normal distribution; use a fitted "
    "non-normal model or the percentile method.",
    "{distribution: normal, normality_test: {passed: false, p_value: 0.001}}",
    "{distribution: lognormal, normality_test: {passed: true}}",
)
_rule(
    "SQM-P008",
    W,
    "Capability claimed for a process out of statistical control",
    "Capability indices predict only for a stable process; report Pp/Ppk or stabilise first.",
    "{in_statistical_control: false, cpk: 1.60}",
    "{in_statistical_control: true, cpk: 1.60}",
)
_rule(
    "SQM-S013",
    E,
    "An RDF feed violates the standard's SHACL shapes",
    "The message names the node and property; the schema reference says what the property "
    "must hold.",
    'sqm:cpk "high"^^xsd:decimal',
    'sqm:cpk "1.52"^^xsd:decimal',
)


def get(code: str) -> Rule:
    """The rule with this code."""
    try:
        return _RULES[code]
    except KeyError:
        raise ValidatorError(f"unknown rule code {code!r}") from None


def emit(
    code: str,
    message: str,
    pointer: str,
    *,
    value: Any = None,
    hint: str | None = None,
    record: int | None = None,
) -> Finding:
    """A finding of rule ``code`` with the rule's severity and, unless given, its hint."""
    rule = get(code)
    return Finding(code, rule.severity, message, pointer, hint or rule.hint, value, record)


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
