"""The supplier's and the auditor's commands against a live registry, on both databases:
register, attest, endorse, rotate, revoke, then verify offline what was saved."""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from sqm.cli import main
from tests.conftest import EXAMPLES
from tests.registry.servers import free_port

FEED = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
SUPPLIER = "LEI:529900SQMKRAFTWERK41"
AUDITOR = {
    "name": "Certa Industrie-Zertifizierung GmbH",
    "identifiers": [{"scheme": "LEI", "code": "529900SQMCERTBODY123"}],
    "country": "DE",
}


def _sqm(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _feed(tmp_path: Path, sequence: int, **changes: Any) -> str:
    feed = copy.deepcopy(FEED)
    feed["header"]["sequence"] = sequence
    feed["header"]["previous_feed"]["sequence"] = sequence - 1
    feed["header"]["issued_at"] = datetime.now(UTC).replace(microsecond=0).isoformat()
    for name, value in changes.items():
        feed["capability_records"][0][name] = value
    path = tmp_path / f"feed-{sequence}.json"
    path.write_text(json.dumps(feed))
    return str(path)


def _pinned(registry: str, tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    """The registry's trust root, printed by ``sqm trust-root`` and saved, and the options
    that name the registry and pin that root."""
    printed = _sqm("trust-root", "--registry", registry)
    assert printed.exit_code == 0, printed.output
    root = tmp_path / "trust-root.json"
    root.write_text(printed.output)
    return root, ("--registry", registry, "--trust-root", str(root))


def test_a_supplier_and_an_auditor_at_a_live_registry(live_registry: str, tmp_path: Path) -> None:
    keys = {name: str(tmp_path / f"{name}.key") for name in ("supplier", "next", "auditor")}
    for path in keys.values():
        assert _sqm("keys", "generate", path).exit_code == 0
    root, at = _pinned(live_registry, tmp_path)

    feed = _feed(tmp_path, 20)
    registered = _sqm("supplier", "register", feed, "--key", keys["supplier"], *at)
    assert registered.exit_code == 0, registered.output
    assert f"registered {SUPPLIER} (unverified)" in registered.output
    again = _sqm("supplier", "register", feed, "--key", keys["next"], *at)
    assert again.exit_code == 1 and "supplier_exists" in again.output

    saved = tmp_path / "first.bundle.json"
    attested = _sqm("attest", feed, "--key", keys["supplier"], "--out", str(saved), *at)
    assert attested.exit_code == 0, attested.output
    assert "logged as entry" in attested.output and "bundle verified" in attested.output
    index = json.loads(saved.read_text())["logIndex"]
    resubmitted = _sqm("attest", feed, "--key", keys["supplier"], "--out", str(saved), *at)
    assert resubmitted.exit_code == 0 and f"already logged as entry {index}" in resubmitted.output

    broken = _feed(tmp_path, 21, cpk=1.7)  # Cpk above Cp: the validator refuses it locally
    refused = _sqm("attest", broken, "--key", keys["supplier"], "--out", str(tmp_path / "x"), *at)
    assert refused.exit_code == 1 and "SQM-E003" in refused.output
    assert "not submitted" in refused.output and not (tmp_path / "x").exists()

    organisation = tmp_path / "auditor.json"
    organisation.write_text(json.dumps(AUDITOR))
    endorser = _sqm(
        "supplier", "register", str(organisation), "--endorser", "--key", keys["auditor"], *at
    )
    assert endorser.exit_code == 0, endorser.output
    endorsed = _sqm(
        "endorse", str(index), "--endorser", "LEI:529900SQMCERTBODY123",
        "--key", keys["auditor"], "--assurance", "third_party_accredited",
        "--scope", "capability audited on site", *at,
    )  # fmt: skip
    assert endorsed.exit_code == 0, endorsed.output
    with urllib.request.urlopen(f"{live_registry}/api/v1/attestations/{index}/endorsements") as r:
        listed = json.load(r)["endorsements"]
    assert [(e["endorser"], e["assurance"]) for e in listed] == [
        ("LEI:529900SQMCERTBODY123", "third_party_accredited")
    ]
    # The endorsement has a bundle of its own, verified offline and against the log now.
    endorsement = tmp_path / "endorsement.bundle.json"
    with urllib.request.urlopen(f"{live_registry}/api/v1/bundles/{listed[0]['logIndex']}") as r:
        endorsement.write_bytes(r.read())
    checked = _sqm(
        "verify", str(endorsement), "--trust-root", str(root), "--registry", live_registry
    )
    assert checked.exit_code == 0, checked.output
    assert (
        "PASS  endorsement: LEI:529900SQMCERTBODY123 endorses entry "
        f"{index} (payload sha256 " in checked.output
    )
    assert "as third_party_accredited, scope 'capability audited on site'" in checked.output
    assert "PASS  endorsed attestation included" in checked.output
    assert "registered as an endorser" in checked.output and "feed valid" not in checked.output
    of_endorsement = _sqm(
        "endorse", str(listed[0]["logIndex"]), "--endorser", "LEI:529900SQMCERTBODY123",
        "--key", keys["auditor"], "--assurance", "third_party", *at,
    )  # fmt: skip
    assert of_endorsement.exit_code == 2 and "not_an_attestation" in of_endorsement.output
    wrong = _sqm(
        "endorse", str(index), "--endorser", SUPPLIER, "--key", keys["supplier"],
        "--assurance", "third_party", *at,
    )  # fmt: skip
    assert wrong.exit_code == 1 and "not_an_endorser" in wrong.output

    rotated = _sqm("supplier", "rotate-key", SUPPLIER, "--key", keys["supplier"],
                   "--new-key", keys["next"], *at)  # fmt: skip
    assert rotated.exit_code == 0, rotated.output
    revoked = _sqm("supplier", "revoke-key", SUPPLIER, "--key", keys["supplier"], *at)
    assert revoked.exit_code == 0, revoked.output
    assert "also revoked" not in revoked.output  # the key rotated in just before stays
    second = _feed(tmp_path, 22)
    late = _sqm("attest", second, "--key", keys["supplier"], "--out", str(tmp_path / "y"), *at)
    assert late.exit_code == 1 and "403" in late.output, late.output
    signed_by_next = tmp_path / "second.bundle.json"
    fresh = _sqm("attest", second, "--key", keys["next"], "--out", str(signed_by_next), *at)
    assert fresh.exit_code == 0, fresh.output

    # Offline: the first bundle (signed before the revocation) and the second both verify.
    for path in (saved, signed_by_next):
        checked = _sqm("verify", str(path), "--trust-root", str(root))
        assert checked.exit_code == 0, checked.output


def test_a_registry_that_does_not_match_the_pinned_trust_root_is_caught(
    live_registry: str, tmp_path: Path, made: Any
) -> None:
    other_root = tmp_path / "other-root.json"
    other_root.write_text(json.dumps(made[1].to_json()))  # another log's trust root
    key = str(tmp_path / "supplier.key")
    _sqm("keys", "generate", key)
    at = ("--registry", live_registry, "--trust-root", str(other_root))
    feed = _feed(tmp_path, 30)
    assert _sqm("supplier", "register", feed, "--key", key, *at).exit_code == 0
    result = _sqm("attest", feed, "--key", key, "--out", str(tmp_path / "b.json"), *at)
    assert result.exit_code == 2
    assert "the registry's bundle fails checkpoint signature" in result.output
    assert not (tmp_path / "b.json").exists()


def test_client_commands_fail_cleanly_on_bad_input(tmp_path: Path) -> None:
    key = str(tmp_path / "supplier.key")
    _sqm("keys", "generate", key)
    feed = _feed(tmp_path, 40)
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = _sqm("supplier", "register", feed, "--key", key, "--registry", nobody)
    assert unreachable.exit_code == 2 and "cannot reach" in unreachable.output
    not_a_url = _sqm("supplier", "register", feed, "--key", key, "--registry", "ftp://x")
    assert not_a_url.exit_code == 2 and "must start with http" in not_a_url.output
    (tmp_path / "bad.key").write_text("not a key")
    bad_key = _sqm("attest", feed, "--key", str(tmp_path / "bad.key"), "--out", "o",
                   "--registry", nobody)  # fmt: skip
    assert bad_key.exit_code == 2 and "not a readable unencrypted PEM private key" in bad_key.output
    (tmp_path / "org.json").write_text('{"no": "name"}')
    no_identity = _sqm("supplier", "register", str(tmp_path / "org.json"), "--key", key,
                       "--registry", nobody)  # fmt: skip
    assert no_identity.exit_code == 2 and "organisation with a name" in no_identity.output
    bad_time = _sqm("supplier", "revoke-key", SUPPLIER, "--key", key, "--at", "yesterday",
                    "--registry", nobody)  # fmt: skip
    assert bad_time.exit_code == 2 and "not an RFC 3339 time" in bad_time.output
    for result in (unreachable, not_a_url, bad_key, no_identity, bad_time):
        assert "Traceback" not in result.output


def _whole_second_passed() -> str:
    """Wait until the clock has passed a whole second; that second, RFC 3339."""
    start = datetime.now(UTC).replace(microsecond=0)
    while datetime.now(UTC) < start + timedelta(seconds=1, milliseconds=50):
        time.sleep(0.05)
    return (start + timedelta(seconds=1)).isoformat()


def test_a_saved_bundle_checked_again_against_the_registry_now(
    live_registry: str, tmp_path: Path, made: Any
) -> None:
    key = str(tmp_path / "supplier.key")
    assert _sqm("keys", "generate", key).exit_code == 0
    root = tmp_path / "trust-root.json"
    root.write_text(_sqm("trust-root", "--registry", live_registry).output)
    at = ("--registry", live_registry, "--trust-root", str(root))
    assert _sqm("supplier", "register", _feed(tmp_path, 20), "--key", key, *at).exit_code == 0
    # A time after the key's registration and before the attestation was logged.
    stolen_from = _whole_second_passed()
    _whole_second_passed()
    saved = tmp_path / "saved.bundle.json"
    assert (
        _sqm("attest", _feed(tmp_path, 20), "--key", key, "--out", str(saved), *at).exit_code == 0
    )
    offline = ("verify", str(saved), "--trust-root", str(root))

    same = _sqm(*offline, "--registry", live_registry)
    assert same.exit_code == 0, same.output
    assert "PASS  current log extends the bundle's: the current tree is the bundle's own" in (
        same.output
    )
    assert "bundle verified, offline and against the registry's log now" in same.output

    later = tmp_path / "later.bundle.json"
    assert (
        _sqm("attest", _feed(tmp_path, 21), "--key", key, "--out", str(later), *at).exit_code == 0
    )
    grown = _sqm(*offline, "--registry", live_registry)
    assert grown.exit_code == 0, grown.output
    assert "the current tree (size 3) extends the bundle's (size 2)" in grown.output
    assert "PASS  entry unchanged: entry 1 and its key's registration (entry 0)" in grown.output
    assert "holds no revocation of the key" in grown.output

    # The key was found stolen, and revoked from a time before the saved attestation was
    # logged: offline the saved bundle cannot show it; against the registry now it fails.
    revoked = _sqm("supplier", "revoke-key", SUPPLIER, "--key", key, "--at", stolen_from, *at)
    assert revoked.exit_code == 0, revoked.output
    assert _sqm(*offline).exit_code == 0
    caught = _sqm(*offline, "--registry", live_registry)
    assert caught.exit_code == 1, caught.output
    assert "FAIL  key not revoked before logging: the key was revoked from" in caught.output
    assert "before the attestation was logged" in caught.output
    assert "bundle NOT verified" in caught.output

    # Another log's bundle (its own trust root) against this registry: not this log.
    other, other_root = made
    other_path, other_root_path = tmp_path / "other.bundle.json", tmp_path / "other-root.json"
    other_path.write_text(json.dumps(other.to_json()))
    other_root_path.write_text(json.dumps(other_root.to_json()))
    foreign = _sqm(
        "verify", str(other_path), "--trust-root", str(other_root_path),
        "--registry", live_registry,
    )  # fmt: skip
    assert foreign.exit_code == 1, foreign.output
    assert "FAIL  registry's current checkpoint: the registry's current bundle fails" in (
        foreign.output
    )

    # A registry that cannot be asked: a clean error, no verdict.
    unreachable = _sqm(*offline, "--registry", f"http://127.0.0.1:{free_port()}")
    assert unreachable.exit_code == 2
    assert "error:" in unreachable.output and "Traceback" not in unreachable.output
    assert "bundle verified" not in unreachable.output
