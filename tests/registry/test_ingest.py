"""Register, attest, verify offline: the registry's write path end to end, on both databases."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Flask
from flask.testing import FlaskClient

from sqm.registry import ingest as ingest_module
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.ingest import REVOCATION_MARGIN, Ingest, RejectionError, _Recent
from sqm.registry.log import UnmetConditionError
from sqm.registry.records import check_records
from sqm.trust import bundle, dsse
from tests.conftest import EXAMPLES
from tests.registry.wire import traced

# One day after the automotive example was issued: inside the registry's 72-hour window.
NOW = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)
FEED = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
SUPPLIER = "LEI:529900SQMKRAFTWERK41"
OPERATOR_TOKEN = "operator-secret"


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    made = create_app(
        RegistryConfig(
            data_dir=tmp_path / "data",
            database_url=url,
            origin="registry.test/log",
            operator_token=OPERATOR_TOKEN,
        )
    )
    made.extensions["sqm"]["ingest"].now = lambda: NOW
    yield made
    _close(made)


def _close(app: Flask) -> None:
    """Drop a PostgreSQL registry's tables (its database outlives the test) and close its pool."""
    engine = app.extensions["sqm"]["log"].engine
    if engine.dialect.name == "postgresql":
        from sqm.registry.db import metadata

        metadata.drop_all(engine)
    engine.dispose()


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _register(
    client: FlaskClient, key: Ed25519PrivateKey, supplier: dict[str, Any] | None = None
) -> Any:
    return client.post("/api/v1/suppliers", json=_registration_body(key, supplier))


def _registration_body(
    key: Ed25519PrivateKey, supplier: dict[str, Any] | None = None
) -> dict[str, Any]:
    organization = supplier or FEED["header"]["supplier"]
    public = _raw(key)
    identity = (
        f"{organization['identifiers'][0]['scheme']}:{organization['identifiers'][0]['code']}"
    )
    return {
        "supplier": organization,
        "publicKey": base64.b64encode(public).decode(),
        "proofOfPossession": base64.b64encode(
            key.sign(bundle.registration_message(identity, public))
        ).decode(),
    }


def _envelope(key: Ed25519PrivateKey, feed: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps(bundle.statement(feed)).encode()
    return dsse.sign(bundle.PAYLOAD_TYPE, payload, key, bundle.key_id(_raw(key))).to_json()


def test_register_attest_and_verify_offline(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    registered = _register(client, key)
    assert registered.status_code == 201, registered.json
    assert (
        registered.json["supplier"] == SUPPLIER and registered.json["verification"] == "unverified"
    )
    response = client.post("/api/v1/attestations", json=_envelope(key, FEED))
    assert response.status_code == 201, response.json
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    report = bundle.verify(bundle.Bundle.from_json(response.json), root)
    assert report.ok, report.steps
    assert report.feed == FEED
    index = response.json["logIndex"]
    again = client.get(f"/api/v1/bundles/{index}")
    assert again.status_code == 200 and bundle.verify(bundle.Bundle.from_json(again.json), root).ok
    assert app.extensions["sqm"]["log"].fsck() == []


def test_an_envelope_in_url_safe_base64_is_logged_as_the_same_envelope(app: Flask) -> None:
    # DSSE allows either alphabet; the log keeps the standard one, so the two texts are one
    # envelope: the second is an exact resubmission. Non-canonical text is refused.
    client = app.test_client()
    while True:  # a signature whose standard base64 holds + or / (most do)
        key = Ed25519PrivateKey.generate()
        standard = _envelope(key, FEED)
        if {"+", "/"} & set(standard["signatures"][0]["sig"]):
            break
    assert _register(client, key).status_code == 201
    url_safe = {
        **standard,
        "payload": standard["payload"].replace("+", "-").replace("/", "_"),
        "signatures": [
            {**s, "sig": s["sig"].replace("+", "-").replace("/", "_")}
            for s in standard["signatures"]
        ],
    }
    assert url_safe != standard
    first = client.post("/api/v1/attestations", json=url_safe)
    assert first.status_code == 201, first.json
    assert first.json["envelope"] == standard
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(bundle.Bundle.from_json(first.json), root).ok
    again = client.post("/api/v1/attestations", json=standard)
    assert again.status_code == 409 and again.json["error"] == "already_logged"
    assert again.json["bundle"]["logIndex"] == first.json["logIndex"]
    padded = standard["signatures"][0]["sig"]
    assert padded.endswith("==")  # 64 bytes: two bits after the last byte's six
    last = padded[-3]
    bent = padded[:-3] + chr(ord(last) + 1) + "=="
    bits = {**standard, "signatures": [{**standard["signatures"][0], "sig": bent}]}
    refused = client.post("/api/v1/attestations", json=bits)
    assert refused.status_code == 400 and refused.json["error"] == "malformed_envelope"
    assert "not canonical base64" in refused.json["message"]


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_an_attestation_opens_one_transaction_its_write(app: Flask) -> None:
    # Its reads run outside a transaction: each a round trip, with no BEGIN before them and
    # no ROLLBACK when their connection goes back to the pool.
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    assert _register(client, key).status_code == 201
    ingest = app.extensions["sqm"]["ingest"]
    ingest.indexer = None  # the search index's own transactions are not the write path's
    with traced(ingest.log.engine) as wire:
        status, made = ingest.attest(_envelope(key, FEED))
    assert status == 201 and made["logIndex"] == 1
    assert (wire.queries("BEGIN"), wire.queries("COMMIT"), wire.queries("ROLLBACK")) == (1, 1, 0)
    # Whether it is logged already and its supplier's keys: one read, then the write's
    # BEGIN, lock, entry with its row plus what waits and the right edge, integration's
    # writes, COMMIT.
    assert wire.statements == 1 + 7
    # The supplier's next: its keys are kept, and confirmed in the write; no read before it.
    next_one = _envelope(key, _next(FEED, 15))
    with traced(ingest.log.engine) as wire:
        status, made = ingest.attest(next_one)
    assert status == 201 and made["logIndex"] == 2
    assert wire.statements == 7
    # Sent again to this worker, which logged it: answered from its memory of what it saw
    # logged, with the bundle's reads only: no write, no transaction.
    with traced(ingest.log.engine) as wire:
        status, again = ingest.attest(next_one)
    assert status == 409 and again["bundle"]["logIndex"] == 2
    assert (wire.queries("BEGIN"), wire.queries("COMMIT"), wire.queries("INSERT")) == (0, 0, 0)
    # Sent to a worker that keeps the keys but did not see it logged: found at the write,
    # which stores nothing and refuses nothing of its batch (no savepoints, no second
    # attempt), then the read that finds it, and its bundle.
    other = Ingest(ingest.log, now=lambda: NOW)
    other._keys.put(SUPPLIER, ingest._keys.get(SUPPLIER))
    with traced(ingest.log.engine) as wire:
        status, again = other.attest(next_one)
    assert status == 409 and again["bundle"]["logIndex"] == 2
    assert wire.queries("SAVEPOINT") == 0 and wire.queries("COMMIT") == 1
    assert ingest.log.size() == 3


@pytest.mark.parametrize("check", ["_feed", "_check_feed"])
def test_a_logged_envelope_is_answered_with_its_bundle_even_if_refused_now(
    app: Flask, monkeypatch: pytest.MonkeyPatch, check: str
) -> None:
    # A newer registry may refuse what an older one logged: a resubmission still gets the
    # bundle of what is in the log, and an envelope not logged gets the refusal. Parsing
    # refuses before the supplier's keys are known; validation after, with the keys kept
    # from the first submission (so without the read that says whether it is logged).
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    envelope = _envelope(key, FEED)
    logged = client.post("/api/v1/attestations", json=envelope)
    assert logged.status_code == 201

    def stricter(self: Any, envelope: Any) -> Any:
        raise RejectionError(422, "invalid_feed", "refused by a newer check")

    monkeypatch.setattr(Ingest, check, stricter)
    same = client.post("/api/v1/attestations", json=envelope)
    assert same.status_code == 409 and same.json["error"] == "already_logged"
    assert same.json["bundle"]["logIndex"] == logged.json["logIndex"]
    other = copy.deepcopy(FEED)
    other["header"]["sequence"] = 1
    refused = client.post("/api/v1/attestations", json=_envelope(key, other))
    assert refused.status_code == 422 and refused.json["message"] == "refused by a newer check"


def test_a_worker_answers_a_retry_of_what_it_logged_without_checking_it_again(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that lost its answer sends the envelope again: the worker that logged it
    # answers with the bundle without verifying, validating or writing it again (each of
    # which would now fail the test), as it answers any logged envelope.
    client, key = _kept(app)
    envelope = _envelope(key, FEED)

    def again(*_: Any, **__: Any) -> Any:
        raise AssertionError("a logged envelope was checked again")

    monkeypatch.setattr("sqm.registry.ingest.validate", again)
    monkeypatch.setattr("sqm.registry.ingest.dsse.verify", again)
    monkeypatch.setattr(app.extensions["sqm"]["ingest"], "_stored", again)
    retry = client.post("/api/v1/attestations", json=envelope)
    assert retry.status_code == 409 and retry.json["error"] == "already_logged"
    # The same payload under another signature is the same logged claim: the same answer.
    stranger = Ed25519PrivateKey.generate()
    payload = base64.b64decode(envelope["payload"])
    signed = dsse.sign(bundle.PAYLOAD_TYPE, payload, stranger, bundle.key_id(_raw(stranger)))
    other = client.post("/api/v1/attestations", json=signed.to_json())
    assert other.status_code == 409 and other.json["bundle"] == retry.json["bundle"]
    monkeypatch.undo()  # offline verification verifies signatures
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(bundle.Bundle.from_json(retry.json["bundle"]), root).ok


def test_a_worker_remembers_a_bounded_number_of_logged_envelopes() -> None:
    remembered: _Recent[str, int] = _Recent(2)
    remembered.put("a", 1)
    remembered.put("b", 2)
    assert remembered.get("a") == 1  # now the most recently used
    remembered.put("c", 3)
    assert (remembered.get("a"), remembered.get("b"), remembered.get("c")) == (1, None, 3)
    assert len(remembered) == 2


def test_resubmission_replay_and_rejections(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    envelope = _envelope(key, FEED)
    assert client.post("/api/v1/attestations", json=envelope).status_code == 201
    same = client.post("/api/v1/attestations", json=envelope)
    assert same.status_code == 409 and same.json["error"] == "already_logged"
    assert bundle.Bundle.from_json(same.json["bundle"]).attestation.index >= 0

    changed = copy.deepcopy(FEED)
    changed["delivery_records"][0]["on_time_percent"] = 98.9
    log = app.extensions["sqm"]["log"]
    size = log.size()
    replay = client.post("/api/v1/attestations", json=_envelope(key, changed))
    assert replay.status_code == 409 and replay.json["error"] == "sequence_taken"
    # A refused feed leaves nothing behind to be logged later.
    assert log.integrate() is None and log.size() == size

    broken = copy.deepcopy(FEED)
    broken["header"]["sequence"] = 15
    broken["header"]["previous_feed"]["sequence"] = 14
    broken["capability_records"][0]["cpk"] = 1.7
    invalid = client.post("/api/v1/attestations", json=_envelope(key, broken))
    assert invalid.status_code == 422 and invalid.json["error"] == "invalid_feed"
    assert "SQM-E003" in {f["code"] for f in invalid.json["findings"]}

    stranger = Ed25519PrivateKey.generate()
    unknown = client.post("/api/v1/attestations", json=_envelope(stranger, broken))
    assert unknown.status_code == 403 and unknown.json["error"] == "unknown_key"
    # A supplier nobody registered: said so, not taken for a wrong key.
    unregistered = copy.deepcopy(broken)
    unregistered["header"]["supplier"]["identifiers"][0]["code"] = "529900SQMDEEPNEST131"
    nobody = client.post("/api/v1/attestations", json=_envelope(stranger, unregistered))
    assert (nobody.status_code, nobody.json["error"]) == (403, "unknown_supplier"), nobody.json
    assert "LEI:529900SQMDEEPNEST131 (the feed's header.supplier" in nobody.json["message"]
    assert "sqm supplier register" in nobody.json["message"]

    forged = _envelope(key, broken)
    forged["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
    bad = client.post("/api/v1/attestations", json=forged)
    assert bad.status_code == 403 and bad.json["error"] == "signature_invalid"

    old = copy.deepcopy(FEED)
    old["header"]["sequence"] = 16
    old["header"]["previous_feed"]["sequence"] = 15
    old["header"]["issued_at"] = "2026-10-01T00:00:00+01:00"
    stale = client.post("/api/v1/attestations", json=_envelope(key, old))
    assert stale.status_code == 422 and stale.json["error"] == "issued_at_out_of_window"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "malformed_json"),
        (b'{"payloadType": "x"}', 400, "malformed_envelope"),
        (
            b'{"payloadType": "text/plain", "payload": "", "signatures": [{"sig": "AA=="}]}',
            415,
            "unsupported_payload_type",
        ),
    ],
)
def test_malformed_submissions_are_4xx(app: Flask, body: bytes, status: int, code: str) -> None:
    response = app.test_client().post(
        "/api/v1/attestations", data=body, content_type="application/json"
    )
    assert response.status_code == status and response.json["error"] == code


def test_registration_needs_possession_and_unique_keys(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    assert _register(client, key).status_code == 201
    assert _register(client, key).json["error"] == "key_already_registered"
    other = Ed25519PrivateKey.generate()
    body = {
        "supplier": FEED["header"]["supplier"],
        "publicKey": base64.b64encode(_raw(other)).decode(),
        "proofOfPossession": base64.b64encode(key.sign(b"something else")).decode(),
    }
    refused = client.post("/api/v1/suppliers", json=body)
    assert refused.status_code == 422 and refused.json["error"] == "invalid_proof_of_possession"
    nameless = client.post("/api/v1/suppliers", json={"supplier": {"identifiers": []}})
    assert nameless.status_code == 422


def _next(feed: dict[str, Any], sequence: int) -> dict[str, Any]:
    """``feed`` as its supplier's feed ``sequence``."""
    later = copy.deepcopy(feed)
    later["header"]["sequence"] = sequence
    later["header"]["previous_feed"]["sequence"] = sequence - 1
    return later


@contextmanager
def _another_worker(app: Flask) -> Iterator[FlaskClient]:
    """A client of a second registry process on the same store (as another gunicorn worker):
    it shares no memory with ``app``."""
    other = create_app(app.extensions["sqm"]["config"])
    other.extensions["sqm"]["ingest"].now = lambda: NOW
    try:
        yield other.test_client()
    finally:
        other.extensions["sqm"]["log"].engine.dispose()


def _revoke(
    client: FlaskClient,
    key: Ed25519PrivateKey,
    revoked_at: str,
    headers: dict[str, str] | None = None,
) -> Any:
    key_id = bundle.key_id(_raw(key))
    signature = key.sign(bundle.revocation_message(SUPPLIER, key_id, revoked_at))
    body = {"revokedAt": revoked_at, "signature": base64.b64encode(signature).decode()}
    return client.post(f"/api/v1/keys/{key_id}/revocation", json=body, headers=headers or {})


def test_a_backdated_revocation_invalidates_later_attestations(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    index = client.post("/api/v1/attestations", json=_envelope(key, FEED)).json["logIndex"]
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(
        bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{index}").json), root
    ).ok
    # The key turns out to have been compromised since 2026-01-01: revoke it from then on.
    revoked = _revoke(client, key, "2026-01-01T00:00:00+00:00")
    assert revoked.status_code == 201, revoked.json
    report = bundle.verify(
        bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{index}").json), root
    )
    assert [s.name for s in report.steps if not s.ok] == ["key valid when logged"]
    later = copy.deepcopy(FEED)
    later["header"]["sequence"] = 15
    later["header"]["previous_feed"]["sequence"] = 14
    refused = client.post("/api/v1/attestations", json=_envelope(key, later))
    assert refused.status_code == 403 and refused.json["error"] == "unknown_key"
    assert _revoke(client, key, "2026-01-01T00:00:00+00:00").json["error"] == "already_revoked"


def test_a_future_revocation_leaves_earlier_attestations_valid(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    index = client.post("/api/v1/attestations", json=_envelope(key, FEED)).json["logIndex"]
    assert _revoke(client, key, "2099-01-01T00:00:00+00:00").status_code == 201
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    report = bundle.verify(
        bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{index}").json), root
    )
    assert report.ok, report.steps
    assert "before the key's revocation" in report.steps[-1].detail


def test_a_revoked_key_is_revoked_again_from_an_earlier_time_only(app: Flask) -> None:
    # Its holder scheduled the key's retirement; then the key turned out stolen since 2026-01-01.
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    index = client.post("/api/v1/attestations", json=_envelope(key, FEED)).json["logIndex"]
    scheduled = _revoke(client, key, "2099-01-01T00:00:00+00:00")
    assert scheduled.status_code == 201, scheduled.json
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(
        bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{index}").json), root
    ).ok
    for not_earlier in (
        "2099-01-01T00:00:00+00:00",
        "2099-01-01T01:00:00+01:00",
        "2100-01-01T00:00:00Z",
    ):
        refused = _revoke(client, key, not_earlier)
        assert refused.status_code == 409 and refused.json["error"] == "already_revoked"
        assert "already revoked from 2099-01-01T00:00:00+00:00" in refused.json["message"]
        assert "must take effect earlier" in refused.json["message"]
    stolen = _revoke(client, key, "2026-01-01T00:00:00+00:00")
    assert stolen.status_code == 201, stolen.json
    assert stolen.json["logIndex"] > scheduled.json["logIndex"]
    made = bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{index}").json)
    assert made.revocation is not None and made.revocation.index == stolen.json["logIndex"]
    report = bundle.verify(made, root)
    assert [s.name for s in report.steps if not s.ok] == ["key valid when logged"]
    assert "revoked from 2026-01-01T00:00:00+00:00" in report.steps[-1].detail
    # In force now: the key's holder may not move it (a retired key's private half may leak,
    # and would disown what it signed); the operator may.
    leaked = _revoke(client, key, "1970-01-01T00:00:00+00:00")
    assert leaked.status_code == 403 and leaked.json["error"] == "operator_required"
    by_operator = client.post(
        f"/api/v1/keys/{bundle.key_id(_raw(key))}/revocation",
        json={"revokedAt": "2025-06-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert by_operator.status_code == 201, by_operator.json
    assert app.extensions["sqm"]["log"].fsck() == []
    assert check_records(app.extensions["sqm"]["log"].engine) == []


def test_revocation_needs_the_key_or_the_operator(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    key_id = bundle.key_id(_raw(key))
    forged = {
        "revokedAt": "2026-01-01T00:00:00+00:00",
        "signature": base64.b64encode(bytes(64)).decode(),
    }
    bad = client.post(f"/api/v1/keys/{key_id}/revocation", json=forged)
    assert bad.status_code == 403 and bad.json["error"] == "signature_invalid"
    assert client.post("/api/v1/keys/nope/revocation", json=forged).status_code == 404
    wrong = client.post(
        f"/api/v1/keys/{key_id}/revocation", json=forged, headers={"Authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    naive = client.post(
        f"/api/v1/keys/{key_id}/revocation", json={"revokedAt": "2026-01-01T00:00:00"}
    )
    assert naive.status_code == 400 and naive.json["error"] == "invalid_time"


def _rotation(
    old: Ed25519PrivateKey, new: Ed25519PrivateKey, supplier: str = SUPPLIER
) -> dict[str, Any]:
    """The body of POST /suppliers/<supplier>/keys: ``new`` rotated in, authorised by ``old``."""
    public = _raw(new)
    return {
        "publicKey": base64.b64encode(public).decode(),
        "proofOfPossession": base64.b64encode(
            new.sign(bundle.registration_message(supplier, public))
        ).decode(),
        "authorization": {
            "keyId": bundle.key_id(_raw(old)),
            "signature": base64.b64encode(
                old.sign(bundle.rotation_message(supplier, bundle.key_id(public)))
            ).decode(),
        },
    }


def test_a_second_key_needs_the_current_key(app: Flask) -> None:
    client = app.test_client()
    first, second, intruder = (Ed25519PrivateKey.generate() for _ in range(3))
    _register(client, first)
    claimed = _register(client, intruder)  # someone else claiming the same supplier
    assert claimed.status_code == 409 and claimed.json["error"] == "supplier_exists"
    forged = client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(intruder, second))
    assert forged.status_code == 403 and forged.json["error"] == "unknown_key"
    rotated = client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(first, second))
    assert rotated.status_code == 201, rotated.json
    leaf = json.loads(base64.b64decode(rotated.json["leaf"]))
    assert leaf["authorizedBy"] == bundle.key_id(_raw(first))
    response = client.post("/api/v1/attestations", json=_envelope(second, FEED))
    assert response.status_code == 201
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(bundle.Bundle.from_json(response.json), root).ok


def test_a_twice_rotated_key_s_bundle_carries_its_chain(app: Flask) -> None:
    client = app.test_client()
    first, second, third = (Ed25519PrivateKey.generate() for _ in range(3))
    registered = _register(client, first)
    for old, new in ((first, second), (second, third)):
        answer = client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(old, new))
        assert answer.status_code == 201, answer.json
    response = client.post("/api/v1/attestations", json=_envelope(third, FEED))
    assert response.status_code == 201, response.json
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    for answer in (response.json, client.get(f"/api/v1/bundles/{response.json['logIndex']}").json):
        made = bundle.Bundle.from_json(answer)
        chain = [json.loads(link.leaf)["keyId"] for link in made.key_chain]
        assert chain == [bundle.key_id(_raw(first)), bundle.key_id(_raw(second))]
        assert made.key_chain[0].index == registered.json["logIndex"]
        report = bundle.verify(made, root)
        assert report.ok, report.steps
        assert "through 2 earlier key(s)" in next(
            s.detail for s in report.steps if s.name == "key authorised by its supplier"
        )
    reversed_chain = dataclasses.replace(made, key_chain=made.key_chain[::-1])
    failed = [s.name for s in bundle.verify(reversed_chain, root).steps if not s.ok]
    assert failed == ["key authorised by its supplier"]


def test_revoking_a_stolen_key_revokes_the_keys_it_authorised_since(app: Flask) -> None:
    # K3 rotated in by K1 before the theft; the thief, holding K1, rotated in K2 a day later
    # and signed with it. The operator revokes K1 from the theft: K2 goes with it, from its
    # own start; K3 stays.
    client, ingest = app.test_client(), app.extensions["sqm"]["ingest"]
    k1, k2, k3 = (Ed25519PrivateKey.generate() for _ in range(3))
    _register(client, k1)
    assert (
        client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(k1, k3)).status_code == 201
    )
    ingest.now = lambda: NOW + timedelta(days=1)
    assert (
        client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(k1, k2)).status_code == 201
    )
    stolen = client.post("/api/v1/attestations", json=_envelope(k2, FEED))
    assert stolen.status_code == 201, stolen.json
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(bundle.Bundle.from_json(stolen.json), root).ok
    theft = (NOW + timedelta(hours=12)).isoformat()
    revoked = client.post(
        f"/api/v1/keys/{bundle.key_id(_raw(k1))}/revocation",
        json={"revokedAt": theft},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert revoked.status_code == 201, revoked.json
    k2_start = json.loads(bundle.Bundle.from_json(stolen.json).key.leaf)["validFrom"]
    assert revoked.json["alsoRevoked"] == [
        {"keyId": bundle.key_id(_raw(k2)), "revokedAt": k2_start}
    ]
    refused = client.post("/api/v1/attestations", json=_envelope(k2, _next(FEED, 15)))
    assert refused.status_code == 403 and refused.json["error"] == "unknown_key"
    again = bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{stolen.json['logIndex']}").json)
    failed = [s.name for s in bundle.verify(again, root).steps if not s.ok]
    assert failed == ["key valid when logged"]
    kept = client.post("/api/v1/attestations", json=_envelope(k3, _next(FEED, 15)))
    assert kept.status_code == 201, kept.json
    assert bundle.verify(bundle.Bundle.from_json(kept.json), root).ok
    assert app.extensions["sqm"]["log"].fsck() == []
    assert check_records(app.extensions["sqm"]["log"].engine) == []


def test_an_identity_has_a_bounded_number_of_current_keys_and_line(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "MAX_KEYS_PER_IDENTITY", 3)
    client = app.test_client()
    keys = [Ed25519PrivateKey.generate() for _ in range(5)]
    _register(client, keys[0])

    def rotate(old: int, new: int) -> Any:
        return client.post(
            f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(keys[old], keys[new])
        )

    def retire(key: int) -> None:  # by its holder: nothing else is revoked with it
        answer = _revoke(client, keys[key], (NOW - timedelta(hours=1)).isoformat())
        assert answer.status_code == 201 and answer.json["alsoRevoked"] == [], answer.json

    assert rotate(0, 1).status_code == 201 and rotate(0, 2).status_code == 201
    crowded = rotate(0, 3)
    assert crowded.status_code == 409 and crowded.json["error"] == "too_many_keys"
    assert f"{SUPPLIER} has 3 current keys" in crowded.json["message"]
    retire(2)  # revoked keys do not count: a thief's, once revoked, lock nobody out
    assert rotate(1, 3).status_code == 201  # a line of three: 0, 1, 3
    retire(0)  # the line 0, 1, 3 stays what 3's bundles carry
    deep = rotate(3, 4)
    assert deep.status_code == 409 and deep.json["error"] == "too_many_keys"
    assert "would carry a chain of 3 keys" in deep.json["message"]


def test_a_key_holder_s_revocation_revokes_that_key_alone(app: Flask) -> None:
    # Whoever holds a key can revoke it, a thief too: were the holder's word to cascade, a
    # thief could revoke the successor the true holder rotated in.
    client = app.test_client()
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(client, first)
    assert (
        client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(first, second)).status_code
        == 201
    )
    backdated = _revoke(client, first, (NOW - timedelta(days=30)).isoformat())
    assert backdated.status_code == 201 and backdated.json["alsoRevoked"] == []
    signed = client.post("/api/v1/attestations", json=_envelope(second, FEED))
    assert signed.status_code == 201, signed.json


def test_a_rotation_whose_authoriser_is_revoked_meanwhile_is_refused(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The authoriser passes the check; its revocation commits before the rotation's write,
    # which must then see it, or the revocation's cascade would miss the new key.
    client, ingest = app.test_client(), app.extensions["sqm"]["ingest"]
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(client, first)
    logged = ingest._logged
    racing = [True]

    def revoked_first(write: Any) -> Any:
        if racing and racing.pop():
            ingest.revoke_key(
                bundle.key_id(_raw(first)), {"revokedAt": NOW.isoformat()}, operator=True
            )
        return logged(write)

    monkeypatch.setattr(ingest, "_logged", revoked_first)
    refused = client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(first, second))
    assert refused.status_code == 403 and refused.json["error"] == "unknown_key"
    assert "revoked meanwhile" in refused.json["message"]
    assert app.extensions["sqm"]["log"].fsck() == []


def test_a_revoked_key_cannot_authorise_a_new_one(app: Flask) -> None:
    client = app.test_client()
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(client, first)
    assert _revoke(client, first, "2026-01-01T00:00:00+00:00").status_code == 201
    refused = client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(first, second))
    assert refused.status_code == 403 and refused.json["error"] == "unknown_key"


AUDITOR = {
    "name": "Certa Industrie-Zertifizierung GmbH",
    "identifiers": [{"scheme": "LEI", "code": "529900SQMCERTBODY123"}],
    "country": "DE",
}


def _register_endorser(client: FlaskClient, key: Ed25519PrivateKey, code: str) -> Any:
    """Register AUDITOR under the LEI ``code`` as an endorser (POST /endorsers)."""
    public = _raw(key)
    body = {
        "supplier": {**AUDITOR, "identifiers": [{"scheme": "LEI", "code": code}]},
        "publicKey": base64.b64encode(public).decode(),
        "proofOfPossession": base64.b64encode(
            key.sign(bundle.registration_message(f"LEI:{code}", public))
        ).decode(),
    }
    return client.post("/api/v1/endorsers", json=body)


def _endorsement(
    key: Ed25519PrivateKey,
    index: int,
    digest: str,
    assurance: str = "third_party_accredited",
    endorser: str = "LEI:529900SQMCERTBODY123",
) -> dict[str, Any]:
    claim = {
        "endorser": endorser,
        "attestation": {"logIndex": index, "payloadSha256": digest},
        "assurance": assurance,
        "scope": "capability records audited on site",
    }
    return dsse.sign(
        bundle.ENDORSEMENT_TYPE, json.dumps(claim).encode(), key, bundle.key_id(_raw(key))
    ).to_json()


def test_a_registered_auditor_endorses_a_logged_attestation(app: Flask) -> None:
    client = app.test_client()
    supplier_key, auditor_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(client, supplier_key)
    made = client.post("/api/v1/attestations", json=_envelope(supplier_key, FEED)).json
    index = made["logIndex"]
    digest = json.loads(base64.b64decode(made["leaf"]))["payloadSha256"]
    not_yet = client.post("/api/v1/endorsements", json=_endorsement(auditor_key, index, digest))
    assert not_yet.status_code == 403 and not_yet.json["error"] == "not_an_endorser"
    assert _register(client, auditor_key, AUDITOR).status_code == 201  # a supplier, not an endorser
    assert (
        client.post("/api/v1/endorsements", json=_endorsement(auditor_key, index, digest)).json[
            "error"
        ]
        == "not_an_endorser"
    )

    auditor_key = Ed25519PrivateKey.generate()
    assert _register_endorser(client, auditor_key, "391200SQMTUVAUDIT203").status_code == 201
    endorser = "LEI:391200SQMTUVAUDIT203"
    wrong = client.post(
        "/api/v1/endorsements", json=_endorsement(auditor_key, index, "0" * 64, endorser=endorser)
    )
    assert wrong.status_code == 422 and wrong.json["error"] == "no_such_attestation"
    level = client.post(
        "/api/v1/endorsements", json=_endorsement(auditor_key, index, digest, "best", endorser)
    )
    assert level.status_code == 422 and level.json["error"] == "invalid_assurance"
    done = client.post(
        "/api/v1/endorsements", json=_endorsement(auditor_key, index, digest, endorser=endorser)
    )
    assert done.status_code == 201, done.json
    leaf = json.loads(base64.b64decode(done.json["leaf"]))
    assert leaf["kind"] == "endorsement" and leaf["attestationIndex"] == index
    listed = client.get(f"/api/v1/attestations/{index}/endorsements").json
    assert listed["endorsements"] == [
        {
            "logIndex": done.json["logIndex"],
            "endorser": endorser,
            "assurance": "third_party_accredited",
            "endorserVerification": "unverified",
        }
    ]
    assert app.extensions["sqm"]["log"].fsck() == []


def _failed(report: bundle.Report) -> list[str]:
    return [step.name for step in report.steps if not step.ok]


def test_an_endorsement_has_a_bundle_that_verifies_offline(app: Flask) -> None:
    client = app.test_client()
    supplier_key, auditor_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(client, supplier_key)
    made = client.post("/api/v1/attestations", json=_envelope(supplier_key, FEED)).json
    other = client.post("/api/v1/attestations", json=_envelope(supplier_key, _next(FEED, 15))).json
    index, digest = made["logIndex"], json.loads(base64.b64decode(made["leaf"]))["payloadSha256"]
    assert _register_endorser(client, auditor_key, "391200SQMTUVAUDIT203").status_code == 201
    endorser = "LEI:391200SQMTUVAUDIT203"
    done = client.post(
        "/api/v1/endorsements", json=_endorsement(auditor_key, index, digest, endorser=endorser)
    )
    assert done.status_code == 201, done.json
    answer = client.get(f"/api/v1/bundles/{done.json['logIndex']}")
    assert answer.status_code == 200, answer.json
    made_bundle = bundle.Bundle.from_json(answer.json)
    assert made_bundle.endorsing and made_bundle.endorsed is not None
    assert made_bundle.endorsed.index == index
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    report = bundle.verify(made_bundle, root)
    assert report.ok, report.steps
    assert [step.name for step in report.steps][-6:] == [
        "endorsement", "leaf binds endorsement", "endorsement included",
        "endorsed attestation included", "endorsement names the signer", "key valid when logged",
    ]  # fmt: skip
    assert report.endorsement == bundle.EndorsementClaim(
        endorser, index, digest, "third_party_accredited", "capability records audited on site"
    )
    assert report.feed is None
    details = {step.name: step.detail for step in report.steps}
    assert "registered as an endorser" in details["endorsement names the signer"]

    # Tampers, each caught at its step: the endorsed entry swapped for another attestation,
    # or left out; the endorsement leaf of another claim; the claim's level raised.
    swapped = bundle.Bundle.from_json(
        {**answer.json, "endorsed": client.get(f"/api/v1/bundles/{other['logIndex']}").json}
    )
    assert _failed(bundle.verify(swapped, root)) == ["endorsed attestation included"]
    bare = bundle.Bundle.from_json({k: v for k, v in answer.json.items() if k != "endorsed"})
    assert _failed(bundle.verify(bare, root)) == ["endorsed attestation included"]
    releafed = bundle.Bundle.from_json({**answer.json, "leaf": made["leaf"]})
    assert "leaf binds endorsement" in _failed(bundle.verify(releafed, root))
    claim = json.loads(made_bundle.envelope.payload)
    claim["assurance"] = "second_party"
    raised = dataclasses.replace(
        made_bundle,
        envelope=dataclasses.replace(made_bundle.envelope, payload=json.dumps(claim).encode()),
    )
    assert _failed(bundle.verify(raised, root)) == ["envelope signature", "leaf binds endorsement"]
    # Neither kind at an entry: a key registration's index.
    key_entry = client.get(f"/api/v1/bundles/{made_bundle.key.index}")
    assert key_entry.status_code == 404 and key_entry.json["error"] == "no_such_attestation"
    assert "GET /api/v1/log/entries/<index>" in key_entry.json["message"]


def test_an_endorsement_s_bundle_names_a_key_valid_when_it_was_logged(app: Flask) -> None:
    # Signed by the endorser's revoked first key and its current one: accepted on the current
    # one, and its bundle must name that one, not the first that verifies.
    client = app.test_client()
    supplier_key, first, current = (Ed25519PrivateKey.generate() for _ in range(3))
    _register(client, supplier_key)
    made = client.post("/api/v1/attestations", json=_envelope(supplier_key, FEED)).json
    digest = json.loads(base64.b64decode(made["leaf"]))["payloadSha256"]
    code = "391200SQMTUVAUDIT203"
    endorser = f"LEI:{code}"
    assert _register_endorser(client, first, code).status_code == 201
    public = _raw(current)
    rotation = _rotation(first, current, endorser)
    assert client.post(f"/api/v1/suppliers/{endorser}/keys", json=rotation).status_code == 201
    first_id = bundle.key_id(_raw(first))
    revoked = client.post(  # retired a minute after the rotation: the current key stays
        f"/api/v1/keys/{first_id}/revocation",
        json={"revokedAt": (NOW + timedelta(minutes=1)).isoformat()},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert revoked.status_code == 201, revoked.json
    one = dsse.Envelope.from_json(
        _endorsement(current, made["logIndex"], digest, endorser=endorser)
    )
    signed = dsse.pae(one.payload_type, one.payload)
    both = dsse.Envelope(
        one.payload_type,
        one.payload,
        (dsse.Signature(first_id, first.sign(signed)), *one.signatures),
    )
    done = client.post("/api/v1/endorsements", json=both.to_json())
    assert done.status_code == 201, done.json
    made_bundle = bundle.Bundle.from_json(
        client.get(f"/api/v1/bundles/{done.json['logIndex']}").json
    )
    assert json.loads(made_bundle.key.leaf)["keyId"] == bundle.key_id(public)
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(made_bundle, root).ok


def test_an_endorsement_whose_key_is_revoked_meanwhile_is_not_stored(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    supplier_key, auditor_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(client, supplier_key)
    made = client.post("/api/v1/attestations", json=_envelope(supplier_key, FEED)).json
    digest = json.loads(base64.b64decode(made["leaf"]))["payloadSha256"]
    code = "391200SQMTUVAUDIT203"
    assert _register_endorser(client, auditor_key, code).status_code == 201
    ingest = app.extensions["sqm"]["ingest"]
    checked = ingest._verify_signature

    def then_revoked(envelope: dsse.Envelope, identity: str, rows: Any) -> Any:
        signer = checked(envelope, identity, rows)  # the check passes; then, before the write:
        ingest.revoke_key(signer.key_id, {"revokedAt": "2026-01-01T00:00:00Z"}, operator=True)
        return signer

    monkeypatch.setattr(ingest, "_verify_signature", then_revoked)
    endorsement = _endorsement(auditor_key, made["logIndex"], digest, endorser=f"LEI:{code}")
    refused = client.post("/api/v1/endorsements", json=endorsement)
    assert refused.status_code == 409 and refused.json["error"] == "key_changed"
    assert (
        client.get(f"/api/v1/attestations/{made['logIndex']}/endorsements").json["endorsements"]
        == []
    )
    assert app.extensions["sqm"]["log"].fsck() == []


def test_an_endorser_may_not_endorse_its_own_attestation(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    code = "391200SQMTUVAUDIT203"
    assert _register_endorser(client, key, code).status_code == 201
    own = copy.deepcopy(FEED)
    own["header"]["supplier"] = {**AUDITOR, "identifiers": [{"scheme": "LEI", "code": code}]}
    made = client.post("/api/v1/attestations", json=_envelope(key, own))
    assert made.status_code == 201, made.json
    digest = json.loads(base64.b64decode(made.json["leaf"]))["payloadSha256"]
    endorsement = _endorsement(key, made.json["logIndex"], digest, endorser=f"LEI:{code}")
    refused = client.post("/api/v1/endorsements", json=endorsement)
    assert refused.status_code == 422 and refused.json["error"] == "self_endorsement"


@pytest.mark.parametrize("number", ["9007199254740993", "NaN", "1e400"])
def test_a_feed_number_without_canonical_form_is_422(app: Flask, number: str) -> None:
    # The subject digest is over the feed's JCS bytes, which cannot carry these numbers.
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    statement = bundle.statement(FEED)
    text = json.dumps(statement).replace('"sequence": 14', f'"sequence": {number}', 1)
    assert text != json.dumps(statement)
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, text.encode(), key, bundle.key_id(_raw(key)))
    response = client.post("/api/v1/attestations", json=envelope.to_json())
    assert response.status_code == 422, response.json
    assert response.json["error"] == "no_canonical_form"
    assert "9007199254740991" in response.json["message"]


def _kept(app: Flask) -> tuple[FlaskClient, Ed25519PrivateKey]:
    """A client, and the key of a supplier whose first feed it logged: the worker keeps the
    supplier's keys from then on."""
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    assert client.post("/api/v1/attestations", json=_envelope(key, FEED)).status_code == 201
    return client, key


def test_a_key_revoked_by_another_worker_signs_nothing_more(app: Flask) -> None:
    # This worker keeps the supplier's keys after its first attestation; another revokes the
    # key. The next attestation verifies with the kept key, and is refused where it is
    # written: nothing of it is stored.
    client, key = _kept(app)
    with _another_worker(app) as other:
        assert _revoke(other, key, NOW.isoformat()).status_code == 201
    log = app.extensions["sqm"]["log"]
    size = log.size()
    refused = client.post("/api/v1/attestations", json=_envelope(key, _next(FEED, 15)))
    assert refused.status_code == 403 and refused.json["error"] == "unknown_key"
    assert log.integrate() is None and log.size() == size
    assert app.extensions["sqm"]["ingest"].log.fsck() == []


def test_a_revocation_scheduled_by_another_worker_is_in_the_next_bundle(app: Flask) -> None:
    client, key = _kept(app)
    with _another_worker(app) as other:
        assert _revoke(other, key, "2099-01-01T00:00:00+00:00").status_code == 201
    made = client.post("/api/v1/attestations", json=_envelope(key, _next(FEED, 15)))
    assert made.status_code == 201, made.json
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    report = bundle.verify(bundle.Bundle.from_json(made.json), root)
    assert report.ok, report.steps
    assert "before the key's revocation" in report.steps[-1].detail


def test_a_key_added_by_another_worker_signs_at_once(app: Flask) -> None:
    client, first = _kept(app)
    second = Ed25519PrivateKey.generate()
    with _another_worker(app) as other:
        added = other.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(first, second))
        assert added.status_code == 201, added.json
    made = client.post("/api/v1/attestations", json=_envelope(second, _next(FEED, 15)))
    assert made.status_code == 201, made.json
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(bundle.Bundle.from_json(made.json), root).ok


def _signed_by_both(
    first: Ed25519PrivateKey, second: Ed25519PrivateKey, feed: dict[str, Any], spoil_first: bool
) -> dict[str, Any]:
    """An envelope signed by two keys (as during a rotation); ``spoil_first``: the first
    signature does not verify."""
    envelope = _envelope(first, feed)
    envelope["signatures"] += _envelope(second, feed)["signatures"]
    if spoil_first:
        envelope["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
    return envelope


def test_an_envelope_signed_by_a_kept_key_and_a_key_added_since_is_judged_on_both(
    app: Flask,
) -> None:
    # This worker keeps the first key only; the second was added by another worker. The
    # first's signature fails: the refusal is not final until the keys are read afresh.
    client, first = _kept(app)
    second = Ed25519PrivateKey.generate()
    with _another_worker(app) as other:
        added = other.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(first, second))
        assert added.status_code == 201, added.json
    envelope = _signed_by_both(first, second, _next(FEED, 15), spoil_first=True)
    made = client.post("/api/v1/attestations", json=envelope)
    assert made.status_code == 201, made.json
    leaf = json.loads(base64.b64decode(made.json["leaf"]))
    assert len(leaf["signatures"]) == 2


def test_a_key_revoked_by_another_worker_is_refused_before_the_feed_is_judged(
    app: Flask,
) -> None:
    # With the kept (stale) key the signature verifies and the feed is refused; the refusal is
    # judged again on the keys as they are now, so every worker answers alike.
    client, key = _kept(app)
    with _another_worker(app) as other:
        assert _revoke(other, key, NOW.isoformat()).status_code == 201
    broken = _next(FEED, 15)
    del broken["header"]["issued_at"]
    refused = client.post("/api/v1/attestations", json=_envelope(key, broken))
    assert refused.status_code == 403 and refused.json["error"] == "unknown_key"


def test_a_key_changed_twice_while_storing_is_a_409_that_stores_nothing(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    log = app.extensions["sqm"]["log"]
    size = log.size()

    def changed(*args: Any) -> Any:
        raise UnmetConditionError("the entry's condition did not hold: nothing stored")

    monkeypatch.setattr(Ingest, "_stored", changed)
    refused = client.post("/api/v1/attestations", json=_envelope(key, FEED))
    assert refused.status_code == 409 and refused.json["error"] == "key_changed"
    assert log.integrate() is None and log.size() == size


def test_a_key_revoked_within_the_margin_signs_nothing_more(app: Flask) -> None:
    """A key revoked from a moment later would be revoked by the time the entry's first
    checkpoint is stamped, and the bundle would fail offline: refused at the door instead."""
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    soon = (NOW + REVOCATION_MARGIN / 2).isoformat()
    assert _revoke(client, key, soon).status_code == 201
    refused = client.post("/api/v1/attestations", json=_envelope(key, FEED))
    assert refused.status_code == 403 and refused.json["error"] == "unknown_key"
    assert "unrevoked for at least 60 more seconds" in refused.json["message"]
    # Until its revocation takes effect it may still authorise its successor, as a rotation
    # that schedules the old key's end first and then adds the new one does.
    rotated = client.post(
        f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(key, Ed25519PrivateKey.generate())
    )
    assert rotated.status_code == 201, rotated.json


def test_a_key_revoked_after_the_margin_still_signs(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    assert _revoke(client, key, (NOW + REVOCATION_MARGIN * 2).isoformat()).status_code == 201
    made = client.post("/api/v1/attestations", json=_envelope(key, FEED))
    assert made.status_code == 201, made.json


_ENDORSER = "LEI:391200SQMTUVAUDIT203"


@pytest.mark.parametrize(
    "claim",
    [
        b'{"endorser": "%s", "attestation": {"logIndex": 1e400, "payloadSha256": "%s"}}',
        b'{"endorser": "%s", "attestation": {"logIndex": "1", "payloadSha256": "%s"}}',
        b'{"endorser": "%s", "attestation": {"logIndex": 1.9, "payloadSha256": "%s"}}',
        b'{"endorser": "%s", "attestation": {"logIndex": true, "payloadSha256": "%s"}}',
        b'{"endorser": "%s", "attestation": {"logIndex": 1, "payloadSha256": "%s\\u0000"}}',
        b'{"endorser": "%s", "attestation": {"logIndex": 1, "payloadSha256": "X%s"}}',
        b'{"endorser": "%s\\u0000", "attestation": {"logIndex": 1, "payloadSha256": "%s"}}',
        b'{"endorser": "%s\\ud800", "attestation": {"logIndex": 1, "payloadSha256": "%s"}}',
        b'{"endorser": ["%s"], "attestation": {"logIndex": 1, "payloadSha256": "%s"}}',
        b'{"endorser": "%s", "attestation": ["%s"]}',
        b'["%s", "%s"]',
        b'{"endorser": "%s", "attestation": {"logIndex": 1, "payloadSha256": "%s"}',
    ],
)
def test_an_endorsement_claim_of_the_wrong_shape_is_400(app: Flask, claim: bytes) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    digest = "ab" * 32
    payload = claim % (_ENDORSER.encode(), digest.encode())
    if b'"assurance"' not in payload and payload.startswith(b'{"endorser"'):
        payload = payload[:-1] + b', "assurance": "third_party"}'
    envelope = dsse.sign(bundle.ENDORSEMENT_TYPE, payload, key, bundle.key_id(_raw(key)))
    log = app.extensions["sqm"]["log"]
    size = log.size()
    refused = client.post("/api/v1/endorsements", json=envelope.to_json())
    assert refused.status_code == 400, refused.json
    assert refused.json["error"] == "malformed_endorsement"
    assert log.size() == size and log.waiting() == 0


@pytest.mark.parametrize("authoriser", [123, {"a": 1}, ["x"], None, "\ud800", "A" * 64])
def test_a_rotation_names_its_authoriser_by_key_id(app: Flask, authoriser: Any) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    body = _rotation(key, Ed25519PrivateKey.generate())
    body["authorization"]["keyId"] = authoriser
    refused = client.post(f"/api/v1/suppliers/{SUPPLIER}/keys", json=body)
    assert refused.status_code == 400
    if authoriser == "\ud800":  # no text at all: the body is refused as it is read
        assert (
            refused.json["error"] == "malformed_json"
            and "unpaired surrogate" in (refused.json["message"])
        )
    else:
        assert refused.json["error"] == "malformed_request"
        assert "64 lowercase hex digits" in refused.json["message"]


@pytest.mark.parametrize(
    ("path", "code"), [("LEI:%00", "nul_character"), ("LEI:" + "x" * 400, "malformed_request")]
)
def test_a_supplier_id_in_the_path_is_checked(app: Flask, path: str, code: str) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    refused = client.post(f"/api/v1/suppliers/{path}/keys", json=_rotation(key, key))
    assert refused.status_code == 400 and refused.json["error"] == code


@pytest.mark.parametrize(
    "revoked_at",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        # ISO 8601 that Python reads, RFC 3339 does not
        "2099-W01-1T00:00:00+00:00",
        "20261207T000000+0000",
        "2026-11-04T12:00:00+01:00:30",
        "2026-11-04T12:00:00.1234567890+00:00",
    ],
)
def test_a_revocation_time_not_rfc3339_in_utc_is_400(app: Flask, revoked_at: str) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    refused = _revoke(client, key, revoked_at)
    assert refused.status_code == 400 and refused.json["error"] == "invalid_time"
    unknown = client.post(
        "/api/v1/keys/not-a-key-id/revocation",
        json={"revokedAt": "2030-01-01T00:00:00+00:00"},
    )
    assert unknown.status_code == 404 and unknown.json["error"] == "no_such_key"


@pytest.mark.parametrize(
    ("identifiers", "status", "code", "expected"),
    [
        ([{"scheme": None, "code": None}], 422, "invalid_supplier", "SQM-S003"),
        ([{"scheme": 1, "code": {"a": [1]}}], 422, "invalid_supplier", "SQM-S004"),
        ([{"scheme": "DUNS", "code": "a/b/../c"}], 422, "invalid_supplier", "SQM-S009"),
        ([{"scheme": "LEI", "code": "529900SQMKRAFTWERK42"}], 422, "invalid_supplier", "SQM-E015"),
        ([], 422, "invalid_supplier", "at least one registered identifier"),
        ([{"scheme": "OTHER", "code": "x" * 400}], 400, "malformed_request", "1 to 300"),
        ([{"scheme": "OTHER", "code": "acme:a/b"}], 422, "invalid_supplier", "/ ? # %"),
        ([{"scheme": "OTHER", "code": "acme: b"}], 422, "invalid_supplier", "white space"),
    ],
)
def test_a_registration_is_checked_as_the_standard_checks_an_organisation(
    app: Flask, identifiers: list[Any], status: int, code: str, expected: str
) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    organization = {"name": "Kraftwerk", "identifiers": identifiers}
    public = _raw(key)
    body = {
        "supplier": organization,
        "publicKey": base64.b64encode(public).decode(),
        "proofOfPossession": base64.b64encode(key.sign(b"unchecked: refused before")).decode(),
    }
    size = app.extensions["sqm"]["log"].size()
    refused = client.post("/api/v1/suppliers", json=body)
    assert refused.status_code == status and refused.json["error"] == code, refused.json
    codes = {f["code"] for f in refused.json.get("findings", [])}
    assert expected in codes or expected in refused.json["message"]
    assert (
        app.extensions["sqm"]["log"].size() == size and app.extensions["sqm"]["log"].waiting() == 0
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"supplier": {"name": NaN}}', "NaN is not a JSON number"),
        (b'{"supplier": {"name": "x"}, "supplier": {"name": "y"}}', "'supplier' twice"),
        (b'{"supplier": {"name": "\\ud800"}}', "unpaired surrogate"),
        (b'{"supplier": "\xff"}', "not UTF-8"),
        (b'{"supplier": ', "line 1 column 14"),
        (b"[" * 100_000, "too deeply"),
    ],
)
def test_a_body_that_is_not_strict_json_says_why(app: Flask, body: bytes, message: str) -> None:
    refused = app.test_client().post(
        "/api/v1/suppliers", data=body, content_type="application/json"
    )
    assert refused.status_code == 400 and refused.json["error"] == "malformed_json"
    assert message in refused.json["message"], refused.json["message"]


def test_an_endorsement_sent_twice_is_logged_once(app: Flask) -> None:
    client = app.test_client()
    supplier_key, auditor_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(client, supplier_key)
    made = client.post("/api/v1/attestations", json=_envelope(supplier_key, FEED)).json
    digest = json.loads(base64.b64decode(made["leaf"]))["payloadSha256"]
    assert _register_endorser(client, auditor_key, "391200SQMTUVAUDIT203").status_code == 201
    envelope = _endorsement(auditor_key, made["logIndex"], digest, endorser=_ENDORSER)
    first = client.post("/api/v1/endorsements", json=envelope)
    assert first.status_code == 201, first.json
    size = app.extensions["sqm"]["log"].size()
    again = client.post("/api/v1/endorsements", json=envelope)
    assert again.status_code == 409 and again.json["error"] == "already_logged"
    assert (
        again.json["logIndex"] == first.json["logIndex"]
        and again.json["leaf"] == first.json["leaf"]
    )
    assert app.extensions["sqm"]["log"].size() == size
    other = _endorsement(auditor_key, made["logIndex"], digest, "second_party", _ENDORSER)
    assert client.post("/api/v1/endorsements", json=other).status_code == 201
    listed = client.get(f"/api/v1/attestations/{made['logIndex']}/endorsements").json
    assert len(listed["endorsements"]) == 2


def test_a_body_may_start_with_a_byte_order_mark(app: Flask) -> None:
    """RFC 8259 section 8.1: a parser MAY ignore one, and some clients send it."""
    answer = app.test_client().post(
        "/api/v1/suppliers", data=b'\xef\xbb\xbf{"supplier": 7}', content_type="application/json"
    )
    assert answer.status_code == 422 and answer.json["error"] == "invalid_supplier"


def _endorsing(app: Flask) -> tuple[FlaskClient, Ed25519PrivateKey, int, str]:
    client = app.test_client()
    supplier_key, auditor_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    _register(client, supplier_key)
    made = client.post("/api/v1/attestations", json=_envelope(supplier_key, FEED)).json
    assert _register_endorser(client, auditor_key, "391200SQMTUVAUDIT203").status_code == 201
    return (
        client,
        auditor_key,
        made["logIndex"],
        json.loads(base64.b64decode(made["leaf"]))["payloadSha256"],
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"endorser": @E, "attestation": @A, "assurance": "third_party", "scope": NaN}', "NaN"),
        ('{"endorser": @E, "attestation": @A, "assurance": "third_party", "x": 1}', "nothing else"),
        ('{"endorser": @E, "attestation": @A, "assurance": "third_party", "scope": 7}', "scope"),
        (
            '{"endorser": @E, "attestation": @A, "assurance": "third_party", "scope": "\\ud800"}',
            "surrogate",
        ),
        (
            '{"endorser": @E, "attestation": @A, "assurance": "third_party", "scope": "a\\u0000"}',
            "NUL",
        ),
        ("UTF16", "not UTF-8"),
    ],
)
def test_an_endorsement_payload_is_read_strictly(app: Flask, payload: str, message: str) -> None:
    client, key, index, digest = _endorsing(app)
    attestation = json.dumps({"logIndex": index, "payloadSha256": digest})
    if payload == "UTF16":
        claim = {"endorser": _ENDORSER, "attestation": json.loads(attestation), "assurance": "x"}
        raw = json.dumps(claim).encode("utf-16")
    else:
        raw = payload.replace("@E", json.dumps(_ENDORSER)).replace("@A", attestation).encode()
    envelope = dsse.sign(bundle.ENDORSEMENT_TYPE, raw, key, bundle.key_id(_raw(key)))
    size = app.extensions["sqm"]["log"].size()
    refused = client.post("/api/v1/endorsements", json=envelope.to_json())
    assert refused.status_code == 400 and refused.json["error"] == "malformed_endorsement"
    assert message in refused.json["message"], refused.json["message"]
    assert app.extensions["sqm"]["log"].size() == size


def test_the_same_endorsement_written_otherwise_is_logged_once(app: Flask) -> None:
    client, key, index, digest = _endorsing(app)
    first = client.post(
        "/api/v1/endorsements", json=_endorsement(key, index, digest, endorser=_ENDORSER)
    )
    assert first.status_code == 201
    claim = {
        "assurance": "third_party_accredited",
        "attestation": {"payloadSha256": digest, "logIndex": index},
        "endorser": _ENDORSER,
        "scope": "looked again",
    }
    for raw in (json.dumps(claim).encode(), b"\xef\xbb\xbf" + json.dumps(claim, indent=2).encode()):
        envelope = dsse.sign(bundle.ENDORSEMENT_TYPE, raw, key, bundle.key_id(_raw(key)))
        again = client.post("/api/v1/endorsements", json=envelope.to_json())
        assert again.status_code == 409 and again.json["logIndex"] == first.json["logIndex"]


@pytest.mark.parametrize(
    ("organization", "message"),
    [
        ({"name": "K", "identifiers": [{"scheme": "OTHER", "code": ""}]}, "each with a code"),
        (
            {"name": "K" * 301, "identifiers": [{"scheme": "LEI", "code": "529900SQMKRAFTWERK41"}]},
            "at most 300",
        ),
        (
            {"name": "K\a", "identifiers": [{"scheme": "LEI", "code": "529900SQMKRAFTWERK41"}]},
            "printable",
        ),
        (
            {"name": "K\u202e", "identifiers": [{"scheme": "LEI", "code": "529900SQMKRAFTWERK41"}]},
            "printable",
        ),
        (
            {"name": "K", "identifiers": [{"scheme": "LEI", "code": "529900SQMKRAFTWERK41"}] * 2},
            "each once",
        ),
        (
            {
                "name": "K",
                "identifiers": [{"scheme": "OTHER", "code": f"x:{n}"} for n in range(21)],
            },
            "at most 20",
        ),
        ({"name": "K", "identifiers": [{"scheme": "OTHER", "code": "acme:Cafe\u0301"}]}, "NFC"),
        # The organisation is logged in its key's leaf, which every bundle of the key carries:
        # a 3.9 MB registration was taken before.
        (
            {
                "name": "K",
                "identifiers": [
                    {"scheme": "LEI", "code": "529900SQMKRAFTWERK41"},
                    {"scheme": "OTHER", "code": "x" * 301},
                ],
            },
            "at most 300 characters",
        ),
        (
            {
                "name": "K",
                "identifiers": [{"scheme": "LEI", "code": "529900SQMKRAFTWERK41"}],
                "url": "https://example.com/" + "a" * 2000,
            },
            "supplier.url at most 2000",
        ),
    ],
)
def test_a_registration_is_bounded_and_plain(
    app: Flask, organization: dict[str, Any], message: str
) -> None:
    key = Ed25519PrivateKey.generate()
    refused = _register(app.test_client(), key, organization)
    assert refused.status_code == 422 and refused.json["error"] == "invalid_supplier"
    assert message in refused.json["message"], refused.json["message"]


def test_a_payload_in_utf16_is_said_to_be_not_utf8(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    payload = json.dumps(bundle.statement(FEED)).encode("utf-16")
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, key, bundle.key_id(_raw(key)))
    refused = client.post("/api/v1/attestations", json=envelope.to_json())
    assert (refused.status_code, refused.json["error"]) == (400, "malformed_statement")
    assert "not UTF-8" in refused.json["message"]


def test_a_rotation_for_an_unknown_supplier_is_404(app: Flask) -> None:
    key = Ed25519PrivateKey.generate()
    refused = app.test_client().post(
        f"/api/v1/suppliers/{SUPPLIER}/keys", json=_rotation(key, Ed25519PrivateKey.generate())
    )
    assert refused.status_code == 404 and refused.json["error"] == "no_such_supplier"


def test_a_payload_with_a_byte_order_mark_is_refused(app: Flask) -> None:
    """Logged for good, and strict readers (Go's, for one) refuse JSON that starts with one."""
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    payload = b"\xef\xbb\xbf" + json.dumps(bundle.statement(FEED)).encode()
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, key, bundle.key_id(_raw(key)))
    refused = client.post("/api/v1/attestations", json=envelope.to_json())
    assert (refused.status_code, refused.json["error"]) == (400, "malformed_statement")
    assert "byte order mark" in refused.json["message"]


def test_a_leap_second_is_refused_and_the_answer_says_why(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    _register(client, key)
    refused = _revoke(client, key, "2030-12-31T23:59:60Z")
    assert refused.status_code == 400 and refused.json["error"] == "invalid_time"
    assert "a leap second (:60) is not taken" in refused.json["message"]
    assert _revoke(client, key, "2031-01-01T00:00:00Z").status_code == 201


@pytest.mark.parametrize("moment", ["before the identity is read", "before the write"])
def test_a_registration_that_loses_a_race_to_its_own_twin_gets_the_entry(
    app: Flask, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    # Two identical requests (a client's retry racing its first try): the loser found the
    # key new, then found the identity registered, before its write or at it. It is
    # answered with the entry the winner logged, as a resubmission is, not supplier_exists.
    ingest = app.extensions["sqm"]["ingest"]
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    body = _registration_body(key)
    raced: list[Any] = []

    def twin() -> None:
        if not raced:
            raced.append(None)  # the twin's own checks must not start a third request
            raced[0] = client.post("/api/v1/suppliers", json=body)

    if moment == "before the identity is read":
        refuse_registered = ingest._refuse_registered

        def new_then_registered(identity: str, key_id: str) -> None:
            refuse_registered(identity, key_id)  # new, when this request checks
            twin()

        monkeypatch.setattr(ingest, "_refuse_registered", new_then_registered)
    else:
        clock = ingest.now

        def registered_meanwhile() -> datetime:  # read once the identity was found new
            twin()
            return clock()

        monkeypatch.setattr(ingest, "now", registered_meanwhile)
    lost = client.post("/api/v1/suppliers", json=body)
    assert raced and raced[0].status_code == 201, raced[0].json
    assert (lost.status_code, lost.json["error"]) == (409, "key_already_registered"), lost.json
    assert lost.json["logIndex"] == raced[0].json["logIndex"]
    assert f"as log entry {lost.json['logIndex']}" in lost.json["message"]
