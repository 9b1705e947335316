"""The offline bundle: a complete one verifies; each tamper fails at the step that guards it."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sqm.trust import TrustError, bundle, dsse
from tests.conftest import EXAMPLES
from tests.trust.builders import NOW, build_bundle, build_rotated_bundle, raw_public


def _failed(report: bundle.Report) -> list[str]:
    return [step.name for step in report.steps if not step.ok]


def test_a_complete_bundle_verifies_through_json(
    made: tuple[bundle.Bundle, bundle.TrustRoot],
) -> None:
    made_bundle, root = made
    again = bundle.Bundle.from_json(json.loads(json.dumps(made_bundle.to_json())))
    root_again = bundle.TrustRoot.from_json(json.loads(json.dumps(root.to_json())))
    report = bundle.verify(again, root_again)
    assert report.ok, report.steps
    assert report.feed is not None and report.feed["header"]["sequence"] == 14
    assert report.timestamp == NOW
    assert len(report.steps) == 10


def _tamper(made_bundle: bundle.Bundle, **changes: Any) -> bundle.Bundle:
    return dataclasses.replace(made_bundle, **changes)


def test_each_tamper_fails_at_its_step(made: tuple[bundle.Bundle, bundle.TrustRoot]) -> None:
    original, root = made
    envelope = original.envelope
    forged_payload = dsse.Envelope(
        envelope.payload_type, envelope.payload.replace(b"1.54", b"1.94"), envelope.signatures
    )
    assert "envelope signature" in _failed(
        bundle.verify(_tamper(original, envelope=forged_payload), root)
    )

    bad_sig = dsse.Envelope(
        envelope.payload_type,
        envelope.payload,
        (dataclasses.replace(envelope.signatures[0], sig=bytes(64)),),
    )
    assert "envelope signature" in _failed(bundle.verify(_tamper(original, envelope=bad_sig), root))

    digest = json.loads(original.attestation.leaf)["payloadSha256"]
    for leaf, expected in (
        (
            original.attestation.leaf.replace(digest.encode(), b"0" * 64),
            {"leaf binds envelope", "attestation included"},
        ),
        (
            original.attestation.leaf.replace(b'"previousIndex":null', b'"previousIndex":0'),
            {"attestation included"},
        ),
    ):
        changed = dataclasses.replace(original.attestation, leaf=leaf)
        assert set(_failed(bundle.verify(_tamper(original, attestation=changed), root))) == expected

    hashes = list(original.attestation.hashes)
    hashes[0] = bytes(32)
    proof = dataclasses.replace(original.attestation, hashes=tuple(hashes))
    assert _failed(bundle.verify(_tamper(original, attestation=proof), root)) == [
        "attestation included"
    ]

    note = original.checkpoint.replace(f"\n{original.attestation.tree_size}\n", "\n99\n")
    assert "checkpoint signature" in _failed(
        bundle.verify(_tamper(original, checkpoint=note), root)
    )

    token = bytearray(original.timestamp)
    token[-3] ^= 1
    assert _failed(bundle.verify(_tamper(original, timestamp=bytes(token)), root)) == [
        "timestamp token"
    ]


def test_a_key_of_another_supplier_or_key_swap_fails(
    made: tuple[bundle.Bundle, bundle.TrustRoot],
) -> None:
    original, root = made
    impostor = Ed25519PrivateKey.generate()
    public = raw_public(impostor)
    leaf = bundle.key_leaf(
        "LEI:529900SQMKRAFTWERK41",
        public,
        "2026-11-01T00:00:00Z",
        impostor.sign(bundle.registration_message("LEI:529900SQMKRAFTWERK41", public)),
    )
    swapped = dataclasses.replace(original.key, leaf=leaf)
    failed = _failed(bundle.verify(_tamper(original, key=swapped), root))
    assert "key registration included" in failed and "envelope signature" in failed


def test_a_feed_naming_another_supplier_fails_even_when_signed_and_logged() -> None:
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    feed["header"]["supplier"]["identifiers"][0]["code"] = "529900SQMSOMEONEELSE1"
    made, root = build_bundle(feed)
    assert _failed(bundle.verify(made, root)) == ["feed names the signer"]


def test_malformed_bundles_are_trust_errors(made: tuple[bundle.Bundle, bundle.TrustRoot]) -> None:
    document = made[0].to_json()
    for broken in (
        {},
        {**document, "mediaType": "x"},
        {**document, "logIndex": -1},
        {**document, "timestamp": "!!"},
    ):
        with pytest.raises(TrustError):
            bundle.Bundle.from_json(broken)
    with pytest.raises(TrustError):
        bundle.TrustRoot.from_json({"log": {}})
    assert base64.b64decode(document["leaf"]) == made[0].attestation.leaf


def test_a_log_key_outside_its_trusted_window_fails_the_timestamp_step(
    made: tuple[bundle.Bundle, bundle.TrustRoot],
) -> None:
    original, root = made
    for valid_from, valid_until in (
        ("2099-01-01T00:00:00+00:00", None),
        ("2000-01-01T00:00:00+00:00", "2001-01-01T00:00:00+00:00"),
    ):
        narrowed = dataclasses.replace(
            root, log_key_valid_from=valid_from, log_key_valid_until=valid_until
        )
        report = bundle.verify(original, narrowed)
        assert _failed(report) == ["timestamp token", "key valid when logged"]
        assert "outside the log key's validity in the trust root" in report.steps[1].detail
    assert bundle.verify(
        original, dataclasses.replace(root, log_key_valid_until=NOW.isoformat())
    ).ok


@pytest.mark.parametrize("valid_from", ["soon", "2026-01-01T00:00:00", 20260101])
def test_a_trust_root_window_must_be_rfc3339_with_an_offset(
    made: tuple[bundle.Bundle, bundle.TrustRoot], valid_from: object
) -> None:
    document = made[1].to_json()
    document["log"]["validFrom"] = valid_from
    with pytest.raises(TrustError, match=r"log\.validFrom must be an RFC 3339 time"):
        bundle.TrustRoot.from_json(document)


@pytest.mark.parametrize(
    "subject", ['"abc"', '[{"name": "x", "digest": "abc"}]', "[7]", '{"digest": {}}']
)
def test_a_statement_of_the_wrong_shape_fails_its_step(
    made: tuple[bundle.Bundle, bundle.TrustRoot], subject: str
) -> None:
    original, root = made
    statement = json.loads(original.envelope.payload)
    statement["subject"] = json.loads(subject)
    envelope = dataclasses.replace(original.envelope, payload=json.dumps(statement).encode())
    report = bundle.verify(_tamper(original, envelope=envelope), root)
    assert "statement" in _failed(report)
    assert "subject digest does not match" in next(
        s.detail for s in report.steps if s.name == "statement"
    )


def test_a_checkpoint_size_in_other_digits_fails_the_checkpoint_step(
    made: tuple[bundle.Bundle, bundle.TrustRoot],
) -> None:
    original, root = made
    size = original.checkpoint.split("\n")[1]
    superscript = original.checkpoint.replace(f"\n{size}\n", "\n\u00b2\n", 1)
    report = bundle.verify(_tamper(original, checkpoint=superscript), root)
    assert report.steps[0].name == "checkpoint signature" and not report.steps[0].ok
    assert "is not a decimal number" in report.steps[0].detail


def test_a_payload_naming_a_member_twice_fails_the_statement_step(
    made: tuple[bundle.Bundle, bundle.TrustRoot],
) -> None:
    original, root = made
    payload = original.envelope.payload.replace(b"{", b'{"predicate": {}, ', 1)
    assert payload != original.envelope.payload
    envelope = dataclasses.replace(original.envelope, payload=payload)
    report = bundle.verify(_tamper(original, envelope=envelope), root)
    step = next(s for s in report.steps if s.name == "statement")
    assert not step.ok and "names the member 'predicate' twice" in step.detail


def test_a_revocation_time_logged_by_an_earlier_registry_still_reads(
    made: tuple[bundle.Bundle, bundle.TrustRoot],
) -> None:
    """Registries before 2026-12 logged any ISO 8601 time with an offset; the log keeps it."""
    for revoked_at in ("2099-01-01 00:00:00+00:00", "2099-01-01T00:00:00.123456789Z"):
        report = bundle.verify(*build_bundle(revoked_at=revoked_at))
        assert report.ok, [(s.name, s.detail) for s in report.steps if not s.ok]
        assert "before the key's revocation from 2099-01-01" in report.steps[-1].detail
    report = bundle.verify(*build_bundle(revoked_at="2026-01-01 00:00:00+00:00"))
    assert [s.name for s in report.steps if not s.ok] == ["key valid when logged"]
    report = bundle.verify(*build_bundle(revoked_at="next week"))
    step = report.steps[-1]
    assert not step.ok and "must be a time with an offset" in step.detail


def test_a_rotated_in_key_verifies_through_its_key_chain() -> None:
    made, root = build_rotated_bundle()
    report = bundle.verify(made, root)
    assert report.ok, [s for s in report.steps if not s.ok]
    step = next(s for s in report.steps if s.name == "key authorised by its supplier")
    assert "through 1 earlier key(s) back to LEI:529900SQMKRAFTWERK41's first key" in step.detail


def test_a_rotation_the_first_key_did_not_sign_fails() -> None:
    # What a log's operator could add at will, were rotations not checked offline.
    made, root = build_rotated_bundle(authorised_by=Ed25519PrivateKey.generate())
    failed = {s.name: s.detail for s in bundle.verify(made, root).steps if not s.ok}
    assert list(failed) == ["key authorised by its supplier"]
    assert "does not verify with the key before it" in failed["key authorised by its supplier"]


def test_a_rotated_in_key_without_its_chain_fails() -> None:
    made, root = build_rotated_bundle()
    bare = dataclasses.replace(made, key_chain=())
    failed = {s.name: s.detail for s in bundle.verify(bare, root).steps if not s.ok}
    assert list(failed) == ["key authorised by its supplier"]
    assert (
        "carries no keyChain back to the identity's first key"
        in (failed["key authorised by its supplier"])
    )
    assert bundle.Bundle.from_json(made.to_json()) == made  # keyChain round-trips
