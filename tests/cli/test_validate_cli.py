"""`sqm validate` as a supplier runs it: exit codes, formats, stdin, folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sqm.cli import main
from tests.conftest import EXAMPLES, INVALID_DIR, NOW, REPO

INVALID = str(INVALID_DIR / "delivery-percent-above-100.json")
VALID = str(EXAMPLES / "feeds" / "automotive-machining.json")


def run(*args: str, stdin: str | bytes | None = None) -> tuple[int, str]:
    # Time rules are judged as of the suite's fixed instant: with the clock's, the examples go
    # stale as the days pass, and a staleness warning comes before the finding a test expects.
    if args[:1] == ("validate",) and "--now" not in args:
        args = ("validate", "--now", NOW.isoformat(), *args[1:])
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.output


def test_valid_feed_exits_0() -> None:
    code, output = run("validate", VALID)
    assert code == 0
    assert "valid (0 errors" in output


def test_invalid_feed_exits_1_with_location_and_fix() -> None:
    code, output = run("validate", INVALID)
    assert code == 1
    assert "SQM-S006  line 543, column 26 (/delivery_records/0/on_time_percent)" in output
    assert "fix:" in output
    assert "\x1b[" not in output, "no colour when not on a terminal"


def test_json_format_is_machine_readable() -> None:
    code, output = run("validate", "--format", "json", INVALID, VALID)
    assert code == 1
    document = json.loads(output)
    assert document["valid"] is False
    first, second = document["results"]
    assert first["findings"][0]["code"] == "SQM-S006"
    assert first["findings"][0]["value"] == 104
    assert second["valid"] is True


def test_sarif_format_names_rules_and_locations() -> None:
    code, output = run("validate", "--format", "sarif", INVALID)
    assert code == 1
    log = json.loads(output)
    assert log["version"] == "2.1.0"
    run_ = log["runs"][0]
    result = run_["results"][0]
    assert result["ruleId"] == "SQM-S006"
    assert run_["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "SQM-S006"
    assert (
        result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
        == "/delivery_records/0/on_time_percent"
    )


def test_syntax_error_in_sarif_carries_the_line() -> None:
    _code, output = run(
        "validate", "--format", "sarif", str(INVALID_DIR / "syntax-trailing-comma.json")
    )
    region = json.loads(output)["runs"][0]["results"][0]["locations"][0]["physicalLocation"][
        "region"
    ]
    assert region["startLine"] == 4


def test_stdin_is_read_with_a_dash() -> None:
    code, output = run("validate", "-", stdin=Path(VALID).read_bytes())
    assert code == 0 and "<stdin>: valid" in output
    code, output = run("validate", "-", stdin=b"")
    assert code == 1 and "SQM-X004" in output


def test_missing_file_and_unknown_profile_exit_2() -> None:
    code, output = run("validate", "no-such-feed.json")
    assert code == 2 and "no such file" in output
    code, output = run("validate", "--profile", "aerospace", VALID)
    assert code == 2 and "unknown profile 'aerospace'" in output


def test_max_findings_and_fail_on() -> None:
    code, output = run("validate", "--format", "json", "--max-findings", "1", str(INVALID_DIR))
    assert code == 1
    assert all(len(r["findings"]) <= 1 for r in json.loads(output)["results"])


def test_folder_of_feeds_is_expanded() -> None:
    code, output = run("validate", str(EXAMPLES / "feeds"), str(EXAMPLES / "csv"))
    assert code == 0
    assert "4 inputs: 0 errors" in output


def test_console_script_runs_without_traceback() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "sqm", "validate", str(INVALID_DIR / "syntax-latin1-bytes.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr + completed.stdout
    assert "SQM-X003" in completed.stdout


def test_max_findings_summary_counts_everything() -> None:
    food = str(EXAMPLES / "feeds" / "food-ingredients.yaml")
    code, output = run("validate", "--now", "2027-01-15T00:00:00Z", "--max-findings", "1", food)
    assert code == 0
    assert "(0 errors, 7 warnings" in output
    assert "6 more findings not shown" in output
    code, _ = run(
        "validate",
        "--now",
        "2027-01-15T00:00:00Z",
        "--fail-on",
        "warning",
        "--max-findings",
        "1",
        food,
    )
    assert code == 1


def test_now_must_carry_a_time_zone() -> None:
    code, output = run("validate", "--now", "2026-11-27T00:00:00", VALID)
    assert code == 2
    assert "time zone" in output


def test_baseline_reports_jumps() -> None:
    baseline = str(REPO / "tests" / "data" / "baseline" / "automotive-machining-2026-09.json")
    code, output = run("validate", "--now", "2026-11-27T12:00:00Z", "--baseline", baseline, VALID)
    assert code == 0, output
    assert "0 errors, 0 warnings" in output


def test_the_terminal_path_reads_ndjson_as_ndjson(tmp_path: Path) -> None:
    from sqm.cli.validate_command import _with_progress
    from sqm.validator import iter_findings

    document = json.loads(Path(VALID).read_text())
    site = document["sites"][0]
    lines = [json.dumps({"sites": site}), json.dumps({"header": document["header"]})]
    feed = tmp_path / "feed.ndjson"
    feed.write_text("\n".join(lines) + "\n")
    for workers in (1, 2):
        shown = _with_progress(feed, (), NOW, None, None, workers)
        expected = [f.code for f in iter_findings(feed, now=NOW)]
        assert [f.code for f in shown.findings] == expected
        assert "SQM-X007" in expected and "SQM-X001" not in expected
