"""Loading feeds: strict JSON and YAML, encodings, and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqm.validator import ValidatorError, validate
from sqm.validator.loaders import expand_inputs, parse_json_text, parse_yaml_text
from tests.conftest import EXAMPLES


def test_duplicate_json_keys_are_a_syntax_finding() -> None:
    loaded = parse_json_text('{"header": {}, "header": {}}', "x.json")
    assert [f.code for f in loaded.findings] == ["SQM-X001"]
    assert "duplicate key 'header'" in loaded.findings[0].message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(literal: str) -> None:
    loaded = parse_json_text(f'{{"a": {literal}}}', "x.json")
    assert [f.code for f in loaded.findings] == ["SQM-X001"]


def test_deeply_nested_json_is_a_finding_not_a_crash() -> None:
    text = "[" * 100_000 + "]" * 100_000
    loaded = parse_json_text(text, "deep.json")
    assert [f.code for f in loaded.findings] == ["SQM-X001"]


def test_yaml_dates_stay_text() -> None:
    loaded = parse_yaml_text("header:\n  issued_at: 2026-11-03T09:00:00+01:00\n", "x.yaml")
    assert loaded.document == {"header": {"issued_at": "2026-11-03T09:00:00+01:00"}}


def test_yaml_alias_bombs_and_self_references_are_findings_quickly() -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]\n"
    loaded = parse_yaml_text(bomb, "lol.yaml")
    assert [f.code for f in loaded.findings] == ["SQM-X001"]
    assert "beyond 2,000,000 values" in loaded.findings[0].message
    loaded = parse_yaml_text("sites:\n  - roles: &r [*r]\n", "self.yaml")
    assert "contains it" in loaded.findings[0].message and loaded.findings[0].line == 2


def test_yaml_merge_keys_and_ordinary_aliases_work() -> None:
    text = "d: &d {start_inclusive: true, end_inclusive: false}\np:\n  <<: *d\n  end_inclusive: true\nq: *d\n"
    loaded = parse_yaml_text(text, "merge.yaml")
    assert loaded.ok
    assert loaded.document["p"] == {"start_inclusive": True, "end_inclusive": True}
    assert loaded.document["q"] == {"start_inclusive": True, "end_inclusive": False}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites:\n  - 1: x\n", "is not text"),
        ("on: yes\n", "is not text"),
        ("x: !!binary aGVsbG8=\n", "no JSON equivalent"),
        ("x: !!set {a, b}\n", "no JSON equivalent"),
        ("x: .nan\n", "not a finite number"),
        ("x: -.inf\n", "not a finite number"),
        ("x: 1" + "0" * 5000 + "\n", "invalid YAML"),
        ("x: 1" + "0" * 30 + "\n", "too large"),
    ],
)
def test_yaml_values_json_cannot_carry_are_findings(text: str, message: str) -> None:
    loaded = parse_yaml_text(text, "x.yaml")
    assert [f.code for f in loaded.findings] == ["SQM-X001"]
    assert message in loaded.findings[0].message


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" + "0" * 400])
def test_json_numbers_out_of_range_are_findings(number: str) -> None:
    loaded = parse_json_text(f'{{"header": {{"sequence": {number}}}}}', "x.json")
    assert [f.code for f in loaded.findings] == ["SQM-X001"]


def test_an_integer_of_thousands_of_digits_is_out_of_range_in_plain_words() -> None:
    loaded = parse_json_text('{"header": {"sequence": ' + "9" * 5000 + "}}", "x.json")
    [finding] = loaded.findings
    assert "(5000 digits) is out of range" in finding.message
    assert "set_int_max_str_digits" not in finding.message


def test_yaml_python_tags_are_refused() -> None:
    loaded = parse_yaml_text("header: !!python/object/apply:os.system ['true']\n", "x.yaml")
    assert [f.code for f in loaded.findings] == ["SQM-X001"]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    source = (EXAMPLES / "feeds" / "electronics-assembly.json").read_bytes()
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + source)
    assert validate(path).is_valid


def test_utf16_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "utf16.json"
    path.write_bytes('{"header": {}}'.encode("utf-16"))
    assert [f.code for f in validate(path).findings] == ["SQM-X003"]


def test_binary_garbage_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "garbage.json"
    path.write_bytes(bytes(range(256)) * 4)
    result = validate(path)
    assert not result.is_valid
    assert result.findings[0].code in {"SQM-X001", "SQM-X003"}


def test_unreadable_path_raises_the_root_error(tmp_path: Path) -> None:
    with pytest.raises(ValidatorError, match="cannot be read"):
        validate(tmp_path / "missing.json")


def test_folder_expansion_finds_files_and_csv_feeds() -> None:
    found = expand_inputs(EXAMPLES / "csv")
    assert found == [EXAMPLES / "csv" / "food-ingredients"]
    assert len(expand_inputs(EXAMPLES / "feeds")) == 3


def test_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ValidatorError, match="no feeds"):
        expand_inputs(tmp_path)
