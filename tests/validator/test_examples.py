"""Example-driven: every valid example passes, every invalid example yields exactly its code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sqm.validator import Severity, validate
from tests.conftest import CSV_FEEDS, VALID_FEEDS, invalid_cases


@pytest.mark.parametrize("path", VALID_FEEDS + CSV_FEEDS, ids=lambda p: p.name)
def test_valid_examples_have_no_errors(path: Path) -> None:
    result = validate(path)
    assert [f for f in result.findings if f.severity is Severity.ERROR] == []
    assert result.is_valid


@pytest.mark.parametrize("case", invalid_cases(), ids=lambda c: c["file"])
def test_invalid_example_yields_exactly_its_expected_finding(case: dict[str, Any]) -> None:
    result = validate(case["path"])
    assert not result.is_valid
    assert [f.code for f in result.findings] == [case["code"]], case["why"]
    finding = result.findings[0]
    if "pointer" in case:
        assert finding.pointer == case["pointer"]
    if "line" in case:
        assert finding.line == case["line"]
    assert finding.message and finding.hint


def test_every_structure_and_syntax_rule_has_an_invalid_example() -> None:
    from sqm.validator import rules

    covered = {c["code"] for c in invalid_cases()}
    expected = {r.code for r in rules.all_rules() if r.layer in ("syntax", "structure")}
    # S011 (list length) has no constraint in v0.1's schema to violate yet.
    assert expected - covered == {"SQM-S011"}
