"""The Python API on parsed data, limits and stream detection."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from sqm.validator import Severity, iter_stream_findings, validate
from sqm.validator.api import json_shaped
from tests.conftest import EXAMPLES, NOW

FOOD = EXAMPLES / "feeds" / "food-ingredients.yaml"
AUTOMOTIVE = EXAMPLES / "feeds" / "automotive-machining.json"


def _codes(findings: list) -> list[str]:  # type: ignore[type-arg]
    return [f.code for f in findings if f.severity is not Severity.INFO]


def test_yaml_datetimes_in_parsed_data_are_taken_as_rfc3339_text() -> None:
    text = FOOD.read_text().replace("'2026-11-06T08:30:00+07:00'", "2026-11-06T08:30:00+07:00")
    document = yaml.safe_load(text)
    assert not isinstance(document["header"]["issued_at"], str)
    assert _codes(validate(document, now=NOW).findings) == []


def test_decimals_in_parsed_data_are_numbers() -> None:
    document = json.loads(AUTOMOTIVE.read_text(), parse_float=Decimal)
    assert _codes(validate(document, now=NOW).findings) == []
    document["capability_records"][0]["cpk"] = Decimal("1.70")  # above Cp 1.58
    assert _codes(validate(document, now=NOW).findings) == ["SQM-E003", "SQM-E004"]


def test_json_shaped_converts_at_every_depth_and_leaves_json_as_it_is() -> None:
    from collections import OrderedDict
    from datetime import UTC, date, datetime

    parsed = {
        "a": [1, 2.5, True, None, "x", {"b": (Decimal("3"), Decimal("0.25"))}],
        1: OrderedDict(d=date(2026, 1, 2), t=datetime(2026, 1, 2, 3, 4, tzinfo=UTC)),
    }
    shaped = json_shaped(parsed)
    assert shaped == {
        "a": [1, 2.5, True, None, "x", {"b": [3, 0.25]}],
        "1": {"d": "2026-01-02", "t": "2026-01-02T03:04:00+00:00"},
    }
    assert type(shaped["a"][5]["b"][0]) is int and type(shaped["1"]) is dict
    plain = json.loads(AUTOMOTIVE.read_text())
    assert json_shaped(plain) == plain


def test_max_findings_keeps_the_counts_and_the_verdict() -> None:
    later = NOW.replace(year=2027, month=1)
    full = validate(FOOD, now=later)
    limited = validate(FOOD, now=later, max_findings=1)
    assert len(limited.findings) == 1
    assert limited.counts() == full.counts()
    assert limited.omitted == {"warning": len(full.findings) - 1}


def test_stream_detection_keeps_a_long_first_line(monkeypatch: object) -> None:
    document = json.dumps(json.loads(AUTOMOTIVE.read_text())).encode()  # one line, no newline
    assert b"\n" not in document
    found = list(iter_stream_findings(io.BytesIO(document), now=NOW))
    assert _codes(found) == []


def test_csv_findings_name_their_file(tmp_path: Path) -> None:
    folder = EXAMPLES / "invalid" / "csv-renamed-column"
    [finding] = validate(folder, now=NOW).findings
    assert finding.source is not None and finding.source.endswith("delivery_records.csv")
    assert "did you mean 'on_time_percent'?" in finding.message
    assert "CSV" not in finding.hint or "template" in finding.hint


def test_baselines_are_read_like_feeds_and_refused_when_broken(tmp_path: Path) -> None:
    from sqm.validator import ValidatorError, load_baseline

    for name, text in (("empty.ndjson", ""), ("garbage.ndjson", "{oops\n"), ("broken.json", "{")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValidatorError, match="baseline"):
            load_baseline(tmp_path / name)
    (tmp_path / "feed.ttl").write_text("")
    with pytest.raises(ValidatorError, match="must be JSON, YAML, NDJSON or a CSV"):
        load_baseline(tmp_path / "feed.ttl")
    assert load_baseline(EXAMPLES / "csv" / "food-ingredients").metrics


def test_p002_fires_when_defects_far_exceed_the_capability() -> None:
    findings = validate(AUTOMOTIVE, now=NOW).findings
    [info] = [f for f in findings if f.code == "SQM-P002"]
    assert info.severity is Severity.INFO
    assert info.pointer == "/defect_rate_records/1"
    assert "declared capability implies" in info.message


def test_huge_integers_in_parsed_data_do_not_crash() -> None:
    document = json.loads(AUTOMOTIVE.read_text())
    document["capability_records"][0]["cpk"] = 10**400
    codes = _codes(validate(document, now=NOW).findings)
    assert "SQM-E003" not in codes  # not judged as a float it cannot be


def test_an_organisation_is_checked_on_its_own() -> None:
    """As a registry checks an identity it registers: schema, check digits, country."""
    from sqm.validator import check_organization

    good = {
        "name": "Kraftwerk Präzisionsteile GmbH",
        "identifiers": [{"scheme": "LEI", "code": "529900SQMKRAFTWERK41"}],
        "country": "DE",
    }
    assert check_organization(good, "/supplier") == []
    findings = check_organization(
        {
            "name": "X",
            "identifiers": [
                {"scheme": "LEI", "code": "529900SQMKRAFTWERK42"},
                {"scheme": "DUNS", "code": "a/b/../c"},
                {"scheme": 7, "code": None},
            ],
            "country": "XX",
            "motto": "trust us",
        },
        "/supplier",
    )
    found = {(f.code, f.pointer) for f in findings}
    assert ("SQM-E015", "/supplier/identifiers/0/code") in found  # mod 97-10
    assert ("SQM-S009", "/supplier/identifiers/1/code") in found  # the DUNS pattern
    assert ("SQM-S004", "/supplier/identifiers/2/scheme") in found
    assert ("SQM-S003", "/supplier/identifiers/2/code") in found
    assert ("SQM-E013", "/supplier/country") in found
    assert ("SQM-S002", "/supplier/motto") in found
    assert [f.code for f in check_organization({"identifiers": []})] == ["SQM-S001"]


@pytest.mark.parametrize("depth", [600, 990, 5000])
def test_parsed_data_nested_too_deeply_to_check_is_a_finding_not_a_crash(depth: int) -> None:
    # Parsed data meets no parser's guard: a registry handed such a signed feed to the
    # validator, whose walk over it exhausted the stack (a 500 to the client).
    feed = json.loads(AUTOMOTIVE.read_text())
    nested: dict[str, object] = {}
    innermost = nested
    for _ in range(depth):
        innermost["a"] = {}
        innermost = innermost["a"]  # type: ignore[assignment]
    feed["header"]["x_nested"] = nested
    findings = validate(feed, now=NOW).findings
    deep = [f for f in findings if f.code == "SQM-X001"]
    assert len(deep) == 1 and "nests objects or arrays too deeply" in deep[0].message, findings
    assert deep[0].severity is Severity.ERROR
