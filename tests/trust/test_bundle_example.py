"""The committed example bundle: it verifies, tampering breaks it, and the by-hand walk-through
in docs/bundle.md is true."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from click.testing import CliRunner

from sqm.cli import main
from tests.conftest import EXAMPLES, REPO

BUNDLE = EXAMPLES / "bundle" / "automotive-machining.bundle.json"
ROOT = EXAMPLES / "bundle" / "trust-root.json"
SCRIPT = EXAMPLES / "bundle" / "check-by-hand.sh"


def test_the_example_bundle_verifies() -> None:
    result = CliRunner().invoke(main, ["verify", str(BUNDLE), "--trust-root", str(ROOT)])
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 11


def test_a_changed_number_in_the_example_fails(tmp_path: Path) -> None:
    import base64

    document = json.loads(BUNDLE.read_text())
    payload = base64.b64decode(document["envelope"]["payload"]).replace(
        b'"cpk": 1.54', b'"cpk": 1.94'
    )
    document["envelope"]["payload"] = base64.b64encode(payload).decode()
    (tmp_path / "b.json").write_text(json.dumps(document))
    result = CliRunner().invoke(
        main, ["verify", str(tmp_path / "b.json"), "--trust-root", str(ROOT)]
    )
    assert result.exit_code == 1
    assert "FAIL  envelope signature" in result.output


def test_the_by_hand_walk_through_is_true(tmp_path: Path) -> None:
    env = {"B": str(BUNDLE), "R": str(ROOT), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    page = (REPO / "docs" / "bundle.md").read_text()
    expected = page.split("It prints, line by line:\n\n```text\n", 1)[1].split("```", 1)[0]
    assert result.stdout == expected
    assert SCRIPT.read_text().split("\n", 3)[3] in page
