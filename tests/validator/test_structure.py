"""The structure layer's findings: codes, pointers, messages and hints that help fix a feed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sqm.validator import Finding, Severity, best_match, validate
from tests.conftest import NOW, VALID_FEEDS, load_feed


def reported(feed: dict[str, Any], profiles: tuple[str, ...] = ()) -> list[Finding]:
    """Errors and warnings (the automotive example carries an informational P002)."""
    findings = validate(feed, profiles, now=NOW).findings
    return [f for f in findings if f.severity is not Severity.INFO]


@pytest.fixture
def feed() -> dict[str, Any]:
    return copy.deepcopy(load_feed(VALID_FEEDS[0]))


def test_typo_gets_a_did_you_mean_hint(feed: dict[str, Any]) -> None:
    feed["capability_records"][1]["cpk_"] = 1.2
    [finding] = reported(feed)
    assert finding.code == "SQM-S002"
    assert finding.pointer == "/capability_records/1/cpk_"
    assert finding.record == 1
    assert "Did you mean 'cpk'?" in finding.hint


def test_missing_field_hint_quotes_the_standard(feed: dict[str, Any]) -> None:
    del feed["header"]["issued_at"]
    [finding] = reported(feed)
    assert finding.code == "SQM-S001"
    assert finding.message == "missing required field 'issued_at'"
    assert "When the feed was issued" in finding.hint


def test_enum_message_lists_the_codes_and_shows_the_value(feed: dict[str, Any]) -> None:
    feed["lead_time_records"][0]["quoted_lead_time"]["unit"] = "days"
    [finding] = reported(feed)
    assert finding.code == "SQM-S004"
    assert finding.value == "days"
    assert "DAY" in finding.message


def test_profile_violations_reported_once_and_core_still_applies(feed: dict[str, Any]) -> None:
    feed["capability_records"][0]["distribution"] = "gaussian"
    findings = reported(feed)
    assert [f.code for f in findings] == ["SQM-S004"]


def test_profile_can_be_requested_without_being_declared(feed: dict[str, Any]) -> None:
    feed["header"]["profiles"] = []
    feed["certification_records"] = feed["certification_records"][2:]
    assert reported(feed) == []
    assert [f.code for f in reported(feed, ("automotive",))] == ["SQM-S010"]


def test_best_match_prefers_the_shallowest_error(feed: dict[str, Any]) -> None:
    feed["header"]["sequence"] = -1
    feed["capability_records"][0]["normality_test"]["p_value"] = 2
    result = validate(feed, now=NOW)
    assert len(reported(feed)) == 2
    best = result.best_match()
    assert best is not None and best.pointer == "/header/sequence"
    assert best_match([]) is None


def test_many_errors_are_all_reported(feed: dict[str, Any]) -> None:
    for record in feed["capability_records"]:
        record["sample_size"] = 0
    codes = [f.code for f in reported(feed)]
    assert codes.count("SQM-S006") == len(feed["capability_records"])
