"""`sqm keys generate` and `sqm verify` as a buyer runs them."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

from click.testing import CliRunner

from sqm.cli import main
from sqm.trust import bundle


def _write(tmp_path: Path, made: bundle.Bundle, root: bundle.TrustRoot) -> tuple[str, str]:
    (tmp_path / "bundle.json").write_text(json.dumps(made.to_json()))
    (tmp_path / "root.json").write_text(json.dumps(root.to_json()))
    return str(tmp_path / "bundle.json"), str(tmp_path / "root.json")


def test_verify_passes_every_step(
    made: tuple[bundle.Bundle, bundle.TrustRoot], tmp_path: Path
) -> None:
    path, root = _write(tmp_path, *made)
    result = CliRunner().invoke(main, ["verify", path, "--trust-root", root])
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 11
    assert "feed valid: valid" in result.output
    assert result.output.rstrip().endswith("bundle verified")


def test_verify_reports_the_failing_step(
    made: tuple[bundle.Bundle, bundle.TrustRoot], tmp_path: Path
) -> None:
    original, root = made
    token = bytearray(original.timestamp)
    token[-3] ^= 1
    path, root_path = _write(tmp_path, dataclasses.replace(original, timestamp=bytes(token)), root)
    result = CliRunner().invoke(main, ["verify", path, "--trust-root", root_path])
    assert result.exit_code == 1
    assert "FAIL  timestamp token" in result.output
    assert "bundle NOT verified" in result.output


def test_unreadable_bundle_exits_2(
    made: tuple[bundle.Bundle, bundle.TrustRoot], tmp_path: Path
) -> None:
    _, root = _write(tmp_path, *made)
    (tmp_path / "broken.json").write_text("{")
    result = CliRunner().invoke(
        main, ["verify", str(tmp_path / "broken.json"), "--trust-root", root]
    )
    assert result.exit_code == 2
    assert "cannot be read as a bundle" in result.output
    (tmp_path / "deep.json").write_text("[" * 100_000)
    for arguments in (
        ["verify", str(tmp_path / "deep.json"), "--trust-root", root],
        ["verify", str(tmp_path / "broken.json"), "--trust-root", str(tmp_path / "deep.json")],
    ):
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "nests arrays or objects too deeply" in result.output or (
            "cannot be read as a bundle" in result.output
        )
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "deep.json"), "--trust-root", root])
    assert "deep.json: cannot be read as a bundle: it nests arrays or objects too deeply" in (
        result.output
    )


def test_keys_generate_writes_a_private_key_only_the_owner_can_read(tmp_path: Path) -> None:
    key = tmp_path / "supplier.key"
    result = CliRunner().invoke(main, ["keys", "generate", str(key)])
    assert result.exit_code == 0 and result.output.startswith("key id ")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
    assert b"PUBLIC KEY" in (tmp_path / "supplier.key.pub").read_bytes()
    again = CliRunner().invoke(main, ["keys", "generate", str(key)])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output


def test_a_bundle_naming_a_member_twice_is_unreadable(
    made: tuple[bundle.Bundle, bundle.TrustRoot], tmp_path: Path
) -> None:
    """A reader that keeps the first of two logIndex members would see another entry."""
    path, root = _write(tmp_path, *made)
    text = Path(path).read_text()
    assert text.startswith("{")
    Path(path).write_text('{"logIndex": 3, ' + text[1:])
    result = CliRunner().invoke(main, ["verify", path, "--trust-root", root])
    assert result.exit_code == 2 and "names the member 'logIndex' twice" in result.output
