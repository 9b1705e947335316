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


def test_yaml_dates_stay_text_and_aliases_do_not_explode() -> None:
    loaded = parse_yaml_text("header:\n  issued_at: 2026-11-03T09:00:00+01:00\n", "x.yaml")
    assert loaded.document == {"header": {"issued_at": "2026-11-03T09:00:00+01:00"}}


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
