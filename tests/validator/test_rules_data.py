"""Example-driven semantic, cross-record and plausibility rules.

Every case in tests/data/invalid/ is a valid example feed with one realistic mutation and an
``.expected.yaml`` beside it naming the one finding it must yield; every feed in tests/data/valid/
is an edge case that must pass without errors or warnings. Informational findings (the examples
carry an SQM-P002) are ignored throughout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from sqm.validator import Finding, Severity, load_baseline, validate
from sqm.validator.layers.plausibility import Baseline
from sqm.validator.rules import Rule, all_rules, get
from tests.conftest import EXAMPLES, NOW, REPO

DATA = REPO / "tests" / "data"
INVALID = DATA / "invalid"
VALID = DATA / "valid"
BASELINES = DATA / "baseline"
# The letters of the layers these cases cover: semantics, cross-record, plausibility.
COVERED_LETTERS = ("E", "R", "P")
# P002 is informational (a defect rate worse than the capability implies): no case can fail on it.
NOT_COVERED = {"SQM-P002"}
CASE_KEYS = {"file", "why", "code", "pointer", "baseline", "profiles"}


def data_cases() -> list[dict[str, Any]]:
    """Every invalid data case with its expectation."""
    cases = []
    for expected in sorted(INVALID.glob("*.expected.yaml")):
        case = yaml.safe_load(expected.read_text(encoding="utf-8"))
        case["expected_file"] = expected.name
        cases.append(case)
    return cases


CASES = data_cases()
VALID_VARIANTS = sorted(VALID.iterdir())


def reported(
    path: Path, profiles: Sequence[str] = (), baseline: Baseline | None = None
) -> list[Finding]:
    """Errors and warnings for a feed at the fixed clock."""
    findings = validate(path, profiles, now=NOW, baseline=baseline).findings
    return [f for f in findings if f.severity is not Severity.INFO]


def case_baseline(case: dict[str, Any]) -> Baseline | None:
    name = case.get("baseline")
    return None if name is None else load_baseline(BASELINES / name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["file"])
def test_invalid_case_yields_exactly_its_expected_finding(case: dict[str, Any]) -> None:
    findings = reported(INVALID / case["file"], case.get("profiles", ()), case_baseline(case))
    assert [(f.code, f.pointer) for f in findings] == [
        (case["code"], case.get("pointer", findings[0].pointer if findings else ""))
    ], case["why"]
    [finding] = findings
    assert finding.severity is get(case["code"]).severity
    assert finding.message and finding.hint


@pytest.mark.parametrize("path", VALID_VARIANTS, ids=lambda p: p.name)
def test_valid_variant_has_no_errors_or_warnings(path: Path) -> None:
    result = validate(path, now=NOW)
    assert [f for f in result.findings if f.severity is not Severity.INFO] == []
    assert result.is_valid


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["file"])
def test_invalid_case_is_well_formed(case: dict[str, Any]) -> None:
    assert set(case) - {"expected_file"} <= CASE_KEYS
    assert case["expected_file"] == case["file"].removesuffix(".json") + ".expected.yaml"
    assert (INVALID / case["file"]).is_file()
    assert isinstance(case["why"], str) and case["why"].endswith(".")
    assert get(case["code"]).code[4] in COVERED_LETTERS
    if "pointer" in case:
        assert case["pointer"].startswith("/")
    if "baseline" in case:
        assert (BASELINES / case["baseline"]).is_file()
    if "profiles" in case:
        assert isinstance(case["profiles"], list) and case["profiles"]


def test_every_semantic_cross_record_and_plausibility_rule_has_an_invalid_case() -> None:
    registered = {r.code for r in all_rules() if r.code[4] in COVERED_LETTERS}
    covered = {c["code"] for c in CASES}
    assert registered - NOT_COVERED - covered == set()
    assert covered <= registered
    assert registered >= NOT_COVERED
    assert all(get(code).severity is Severity.INFO for code in NOT_COVERED)


def test_there_are_at_least_three_valid_variants_including_ndjson() -> None:
    assert len(VALID_VARIANTS) >= 3
    assert any(p.suffix == ".ndjson" for p in VALID_VARIANTS)


def test_the_example_itself_is_clean_against_the_baseline() -> None:
    # The P004 and P005 cases differ from this example by their mutation only, so the baseline
    # must not flag the unmutated example.
    baseline = load_baseline(BASELINES / "automotive-machining-2026-09.json")
    assert baseline.metrics
    assert reported(EXAMPLES / "feeds" / "automotive-machining.json", baseline=baseline) == []


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.code)
def test_every_rule_documents_a_failing_and_a_passing_snippet(rule: Rule) -> None:
    assert rule.failing.strip()
    assert rule.passing.strip()
    assert rule.failing != rule.passing
    assert rule.title and rule.hint
