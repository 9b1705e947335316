"""`sqm schema` and `sqm rules`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqm.cli import main
from sqm.validator import rules
from tests.conftest import EXAMPLES, REPO


@pytest.mark.slow
def test_generate_check_passes_on_the_committed_tree() -> None:
    result = CliRunner().invoke(main, ["schema", "generate", "--check"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_to_csv_and_back(tmp_path: Path) -> None:
    runner = CliRunner()
    feed = EXAMPLES / "feeds" / "electronics-assembly.json"
    result = runner.invoke(main, ["schema", "to-csv", str(feed), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    back = runner.invoke(main, ["schema", "from-csv", str(tmp_path / "out")])
    assert back.exit_code == 0
    assert json.loads(back.output) == json.loads(feed.read_text())


def test_to_csv_of_a_broken_file_is_a_clean_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = CliRunner().invoke(main, ["schema", "to-csv", str(broken), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "cannot be read as a feed" in result.output


def test_rules_page_in_docs_is_current() -> None:
    page = (REPO / "docs" / "reference" / "rules.md").read_text(encoding="utf-8")
    assert page == rules.rules_markdown(), "run `sqm rules --markdown > docs/reference/rules.md`"
    listing = CliRunner().invoke(main, ["rules"]).output
    assert all(rule.code in listing for rule in rules.all_rules())


def test_generator_failure_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqm.schema import generate

    def broken() -> None:
        raise ValueError("slot: 'equals_string' requires range 'string'")

    monkeypatch.setattr(generate, "render", broken)
    result = CliRunner().invoke(main, ["schema", "generate"])
    assert result.exit_code == 2
    assert "generation failed: ValueError: slot: 'equals_string'" in result.output
    assert "Traceback" not in result.output


def test_to_csv_and_to_rdf_refuse_malformed_feeds_cleanly(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "shape.json").write_text('{"header": 5, "sites": 5}')
    (tmp_path / "binary.yaml").write_text("header: {}\nx: !!binary aGVsbG8=\n")
    result = runner.invoke(
        main, ["schema", "to-csv", str(tmp_path / "shape.json"), str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "validate the feed first" in result.output
    result = runner.invoke(main, ["schema", "to-rdf", str(tmp_path / "binary.yaml")])
    assert result.exit_code == 2 and "no JSON equivalent" in result.output


def test_committed_rdf_examples_are_what_to_rdf_produces() -> None:
    import rdflib
    from rdflib.compare import isomorphic

    result = CliRunner().invoke(
        main, ["schema", "to-rdf", str(EXAMPLES / "feeds" / "electronics-assembly.json")]
    )
    assert result.exit_code == 0
    produced = rdflib.Graph().parse(data=result.output, format="turtle")
    committed = rdflib.Graph().parse(EXAMPLES / "rdf" / "electronics-assembly.ttl", format="turtle")
    assert isomorphic(produced, committed)
