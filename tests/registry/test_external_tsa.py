"""An external RFC 3161 TSA over HTTP, instead of the registry's own or in addition to it.

The external TSA is a second, independent registry's public TSA endpoint on a real socket,
behind a switch that can make it fail like an outage would."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from flask import Flask
from sqlalchemy import Engine, select

from sqm.client import requests
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.db import attestations
from sqm.registry.errors import RegistryError
from sqm.registry.ingest import RejectionError
from sqm.trust import bundle, merkle, timestamp
from sqm.trust.checkpoint import open_note
from tests.conftest import EXAMPLES
from tests.registry.servers import serving
from tests.trust.test_timestamp import _openssl_verify

FEED = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())


class Outage:
    """WSGI middleware: answers 503 while ``down``."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.down = False

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if self.down:
            start("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"down for maintenance"]
        return self.app(environ, start)


@pytest.fixture
def external_tsa(tmp_path: Path) -> Iterator[tuple[str, Path, Outage]]:
    provider = create_app(RegistryConfig(data_dir=tmp_path / "provider", origin="tsa.example"))
    switch = Outage(provider)
    with serving(switch) as base:
        yield f"{base}/api/v1/tsa", tmp_path / "provider" / "keys" / "tsa-ca.crt", switch


OPERATOR_TOKEN = "operator-secret"


def _registry(engine: Engine, tmp_path: Path, tsa: tuple[str, Path, Outage], mode: str) -> Flask:
    url = engine.url.render_as_string(hide_password=False)
    config = RegistryConfig(
        data_dir=tmp_path / "registry",
        database_url=url,
        external_tsa_url=tsa[0],
        external_tsa_ca=tsa[1],
        external_tsa_mode=mode,
        operator_token=OPERATOR_TOKEN,
    )
    app = create_app(config)
    issued = datetime.fromisoformat(FEED["header"]["issued_at"])
    app.extensions["sqm"]["ingest"].now = lambda: issued.astimezone(UTC)
    return app


def _attest(app: Flask, feed: dict[str, Any] = FEED) -> Any:
    key = Ed25519PrivateKey.generate()
    client = app.test_client()
    registered = client.post(
        "/api/v1/suppliers", json=requests.registration(feed["header"]["supplier"], key)
    )
    assert registered.status_code == 201, registered.json
    return client.post("/api/v1/attestations", json=requests.attestation(feed, key).to_json())


def _registered(
    engine: Engine, tmp_path: Path, tsa: tuple[str, Path, Outage]
) -> tuple[Flask, Ed25519PrivateKey]:
    """A registry with both TSAs, and the key it registered for the example feed's supplier."""
    app = _registry(engine, tmp_path, tsa, "also")
    key = Ed25519PrivateKey.generate()
    body = requests.registration(FEED["header"]["supplier"], key)
    assert app.test_client().post("/api/v1/suppliers", json=body).status_code == 201
    return app, key


def test_instead_the_external_tsa_stamps_and_the_trust_root_names_it(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    app = _registry(engine, tmp_path, external_tsa, "instead")
    answer = _attest(app)
    assert answer.status_code == 201, answer.json
    root = bundle.TrustRoot.from_json(app.test_client().get("/api/v1/trust-root").json)
    assert root.tsa_ca.public_bytes(Encoding.PEM) == external_tsa[1].read_bytes()
    made = bundle.Bundle.from_json(answer.json)
    assert made.additional_timestamps == ()
    report = bundle.verify(made, root)
    assert report.ok, report.steps
    checked = _openssl_verify(
        tmp_path, made.timestamp, made.checkpoint.encode(), external_tsa[1].read_bytes()
    )
    assert checked.returncode == 0, checked.stderr
    assert app.extensions["sqm"]["log"].fsck() == []


def test_also_both_tokens_travel_in_the_bundle_and_both_verify(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    app = _registry(engine, tmp_path, external_tsa, "also")
    answer = _attest(app)
    assert answer.status_code == 201, answer.json
    served = app.test_client().get("/api/v1/trust-root").json
    assert len(served["additionalTsas"]) == 1
    root = bundle.TrustRoot.from_json(served)
    made = bundle.Bundle.from_json(answer.json)
    assert len(made.additional_timestamps) == 1
    report = bundle.verify(made, root)
    assert report.ok, report.steps
    assert (
        "checkpoint also timestamped at"
        in {s.name: s.detail for s in report.steps}["additional timestamps"]
    )
    # A tampered additional token fails its own step; a trust root without it cannot check it.
    token = bytearray(made.additional_timestamps[0])
    token[-5] ^= 1
    tampered = dataclasses.replace(made, additional_timestamps=(bytes(token),))
    steps = {s.name: s.ok for s in bundle.verify(tampered, root).steps}
    assert steps["additional timestamps"] is False and steps["timestamp token"] is True
    minimal = dataclasses.replace(root, additional_tsas=())
    unchecked = bundle.verify(made, minimal)
    assert unchecked.ok
    assert "not checked" in {s.name: s.detail for s in unchecked.steps}["additional timestamps"]
    assert app.extensions["sqm"]["log"].fsck() == []


def test_an_outage_answers_503_keeps_the_entry_and_logs_it_when_the_tsa_is_back(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    app, key = _registered(engine, tmp_path, external_tsa)
    log, client = app.extensions["sqm"]["log"], app.test_client()
    external_tsa[2].down = True
    envelope = requests.attestation(FEED, key).to_json()
    refused = client.post("/api/v1/attestations", json=envelope)
    assert refused.status_code == 503 and refused.json["error"] == "timestamp_unavailable"
    assert "will be logged when the TSA answers" in refused.json["message"]
    assert log.waiting() == 1
    external_tsa[2].down = False
    again = client.post("/api/v1/attestations", json=envelope)
    assert again.status_code == 409 and again.json["error"] == "already_logged"
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(bundle.Bundle.from_json(again.json["bundle"]), root).ok
    assert log.waiting() == 0 and log.fsck() == []


def _proven(client: Any, answer: dict[str, Any]) -> int:
    """The log index of the entry ``answer`` names, its inclusion proof checked against the
    registry's signed checkpoint now."""
    note = client.get("/api/v1/log/checkpoint").get_data(as_text=True)
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    checkpoint = open_note(note, root.log_key)
    assert answer["inclusionProof"]["treeSize"] == checkpoint.size
    merkle.verify_inclusion(
        merkle.leaf_hash(base64.b64decode(answer["leaf"])),
        answer["logIndex"],
        checkpoint.size,
        [base64.b64decode(h) for h in answer["inclusionProof"]["hashes"]],
        checkpoint.root,
    )
    return int(answer["logIndex"])


def test_a_registration_resent_after_an_outage_answers_with_its_entry(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    # The 503 says: resubmit the same request later to get its proof. For a registration
    # that answer was a bare 409 key_already_registered, with no entry and no proof.
    app = _registry(engine, tmp_path, external_tsa, "also")
    log, client = app.extensions["sqm"]["log"], app.test_client()
    key = Ed25519PrivateKey.generate()
    body = requests.registration(FEED["header"]["supplier"], key)
    external_tsa[2].down = True
    refused = client.post("/api/v1/suppliers", json=body)
    assert refused.status_code == 503 and refused.json["error"] == "timestamp_unavailable"
    assert "resubmit the same request later to get its proof" in refused.json["message"]
    assert client.post("/api/v1/suppliers", json=body).status_code == 503  # still down
    external_tsa[2].down = False
    again = client.post("/api/v1/suppliers", json=body)
    assert again.status_code == 409 and again.json["error"] == "key_already_registered"
    assert again.json["keyId"] == requests.key_id(key)
    index = _proven(client, again.json)
    assert f"as log entry {index}" in again.json["message"]
    assert json.loads(base64.b64decode(again.json["leaf"]))["keyId"] == requests.key_id(key)
    assert log.waiting() == 0 and log.fsck() == []
    # The same key under another identity names no entry of that identity's.
    other = dict(FEED["header"]["supplier"], identifiers=[{"scheme": "DUNS", "code": "150483782"}])
    elsewhere = client.post("/api/v1/suppliers", json=requests.registration(other, key))
    assert elsewhere.status_code == 409 and "logIndex" not in elsewhere.json


def test_a_revocation_during_an_outage_names_the_keys_revoked_with_it(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    app, key = _registered(engine, tmp_path, external_tsa)
    log, client = app.extensions["sqm"]["log"], app.test_client()
    identity = "LEI:" + FEED["header"]["supplier"]["identifiers"][0]["code"]
    successor = Ed25519PrivateKey.generate()
    added = client.post(
        f"/api/v1/suppliers/{identity}/keys", json=requests.rotation(identity, key, successor)
    )
    assert added.status_code == 201, added.json
    start = json.loads(base64.b64decode(added.json["leaf"]))["validFrom"]
    # The operator revokes the first key from before the successor was authorised: the
    # successor goes with it, and the answer must say so even when the TSA is down.
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    path = f"/api/v1/keys/{requests.key_id(key)}/revocation"
    body = {"revokedAt": "2020-01-01T00:00:00Z"}
    external_tsa[2].down = True
    refused = client.post(path, json=body, headers=operator)
    assert refused.status_code == 503 and refused.json["error"] == "timestamp_unavailable"
    assert refused.json["alsoRevoked"] == [
        {"keyId": requests.key_id(successor), "revokedAt": start}
    ]
    assert log.waiting() == 2
    external_tsa[2].down = False
    again = client.post(path, json=body, headers=operator)
    assert again.status_code == 409 and again.json["error"] == "already_revoked"
    index = _proven(client, again.json)
    assert f"(log entry {index})" in again.json["message"]
    revocation = json.loads(base64.b64decode(again.json["leaf"]))
    assert (revocation["keyId"], revocation["by"]) == (requests.key_id(key), "operator")
    assert log.waiting() == 0 and log.fsck() == []


def test_an_entry_in_the_tree_is_named_during_an_outage_whatever_else_waits(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    # Another request's entry waits for the TSA; a resent registration, or a revocation
    # refused for a key revoked already, names its entry, which is in the tree: no 503
    # saying "the entry is stored" for a request that stored nothing.
    app, key = _registered(engine, tmp_path, external_tsa)
    client = app.test_client()
    identity = "LEI:" + FEED["header"]["supplier"]["identifiers"][0]["code"]
    path = f"/api/v1/keys/{requests.key_id(key)}/revocation"
    retired = client.post(path, json=requests.revocation(identity, key, "2099-01-01T00:00:00Z"))
    assert retired.status_code == 201, retired.json
    external_tsa[2].down = True
    other = Ed25519PrivateKey.generate()
    organisation = dict(
        FEED["header"]["supplier"], identifiers=[{"scheme": "DUNS", "code": "150483782"}]
    )
    waits = client.post("/api/v1/suppliers", json=requests.registration(organisation, other))
    assert waits.status_code == 503
    later = client.post(path, json=requests.revocation(identity, key, "2099-06-01T00:00:00Z"))
    assert (later.status_code, later.json["error"]) == (409, "already_revoked"), later.json
    assert later.json["logIndex"] == retired.json["logIndex"]
    unsigned = client.post(path, json={"revokedAt": "2099-06-01T00:00:00Z", "signature": ""})
    assert unsigned.status_code == 409, unsigned.json
    body = requests.registration(FEED["header"]["supplier"], key)
    resent = client.post("/api/v1/suppliers", json=body)
    assert (resent.status_code, resent.json["error"]) == (409, "key_already_registered")
    _proven(client, resent.json)
    assert app.extensions["sqm"]["log"].waiting() == 1  # still waiting for the TSA


def test_a_bundle_read_while_its_entry_is_integrated_names_a_checkpoint_holding_it(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    # The entry waits (TSA outage); its bundle is 503 until it is in the tree. When the batch
    # that logs it commits while the bundle is being read, the bundle must still name a
    # checkpoint that holds it (it read a stale one first, then failed with a 500).
    app, key = _registered(engine, tmp_path, external_tsa)
    log, ingest = app.extensions["sqm"]["log"], app.extensions["sqm"]["ingest"]
    client = app.test_client()
    external_tsa[2].down = True
    refused = client.post("/api/v1/attestations", json=requests.attestation(FEED, key).to_json())
    assert refused.status_code == 503
    with engine.connect() as connection:
        seq = connection.execute(select(attestations.c.seq)).scalar_one()
    with pytest.raises(RejectionError) as waiting:
        ingest.bundle_for(seq)
    assert (waiting.value.status, waiting.value.code) == (503, "not_yet_integrated")

    external_tsa[2].down = False
    read_entries = log.entries_by_seq

    def integrated_meanwhile(seqs: Iterable[int], connection: Any = None) -> Any:
        log.integrate()  # another worker's batch commits just now
        return read_entries(seqs, connection)

    log.entries_by_seq = integrated_meanwhile
    if engine.dialect.name == "sqlite":
        # The bundle's reads share one snapshot, taken before that batch: still waiting.
        with pytest.raises(RejectionError, match="not_yet_integrated"):
            ingest.bundle_for(seq)
        log.entries_by_seq = read_entries
    made = ingest.bundle_for(seq)
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(made, root).ok and log.waiting() == 0


def test_a_bundle_waits_for_its_keys_revocation_to_be_in_the_tree(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    # The revocation commits during a TSA outage, sequenced but not in the tree. A bundle of
    # the key's earlier attestation must not be built without it (it failed with a KeyError,
    # a 500), nor without it be presented as valid: it waits, 503, until the entry is logged.
    app, key = _registered(engine, tmp_path, external_tsa)
    log, client = app.extensions["sqm"]["log"], app.test_client()
    identity = bundle.supplier_identity(FEED["header"]["supplier"])
    logged = client.post("/api/v1/attestations", json=requests.attestation(FEED, key).to_json())
    assert logged.status_code == 201, logged.json
    index = logged.json["logIndex"]
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    assert bundle.verify(
        bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{index}").json), root
    ).ok

    external_tsa[2].down = True
    revocation = requests.revocation(identity, key, "2026-01-01T00:00:00+00:00")
    revoked = client.post(f"/api/v1/keys/{requests.key_id(key)}/revocation", json=revocation)
    assert revoked.status_code == 503 and revoked.json["error"] == "timestamp_unavailable"
    assert log.waiting() == 1
    waiting = client.get(f"/api/v1/bundles/{index}")
    assert waiting.status_code == 503 and waiting.json["error"] == "not_yet_integrated"

    external_tsa[2].down = False
    assert log.integrate() is not None and log.waiting() == 0
    report = bundle.verify(
        bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{index}").json), root
    )
    # Now the bundle carries the revocation, backdated before the attestation was logged.
    assert [s.name for s in report.steps if not s.ok] == ["key valid when logged"]


def test_a_misconfigured_external_tsa_is_refused_at_start(tmp_path: Path) -> None:
    base = RegistryConfig(data_dir=tmp_path, external_tsa_url="https://tsa.example/")
    with pytest.raises(RegistryError, match="SQM_REGISTRY_TSA_CA"):
        create_app(base)
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(RegistryError, match="not a PEM CA certificate"):
        create_app(dataclasses.replace(base, external_tsa_ca=tmp_path / "ca.pem"))
    with pytest.raises(RegistryError, match="must be 'instead' or 'also'"):
        create_app(
            dataclasses.replace(
                base,
                external_tsa_ca=Path(__file__).parent / "no-such.pem",
                external_tsa_mode="sometimes",
            )
        )


def _feed(number: int) -> dict[str, Any]:
    """The example feed as the supplier's ``number``-th further feed, chained to the one before."""
    feed = json.loads(json.dumps(FEED))
    feed["header"]["sequence"] = FEED["header"]["sequence"] + number
    feed["header"]["previous_feed"]["sequence"] = FEED["header"]["sequence"] + number - 1
    feed["header"]["feed_id"] = f"urn:uuid:6f1c2b1e-8c0a-4f57-9a52-3c7f0e0b2a{number:02d}"
    return feed


def _plain(engine: Engine, tmp_path: Path) -> Flask:
    """The registry of ``_registry``, with its own TSA alone."""
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    issued = datetime.fromisoformat(FEED["header"]["issued_at"])
    app.extensions["sqm"]["ingest"].now = lambda: issued.astimezone(UTC)
    return app


def _verified(app: Flask, index: int) -> bundle.Report:
    client = app.test_client()
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    return bundle.verify(bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{index}").json), root)


def _retire(engine: Engine, tmp_path: Path, fingerprint: str) -> Any:
    from click.testing import CliRunner

    from sqm.cli import main

    url = engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(
        main, ["registry", "retire-tsa", fingerprint, "--data", str(tmp_path / "registry"),
               "--database", url],
    )  # fmt: skip


def _fingerprint(external_tsa: tuple[str, Path, Outage]) -> str:
    ca = x509.load_pem_x509_certificate(external_tsa[1].read_bytes())
    return hashlib.sha256(ca.public_bytes(Encoding.DER)).hexdigest()


def _attest_as_another(app: Flask) -> Any:
    """Register another supplier with a key of its own and submit its feed: the answer."""
    key = Ed25519PrivateKey.generate()
    client = app.test_client()
    other = {**FEED["header"]["supplier"], "name": "Another", "identifiers": [
        {"scheme": "LEI", "code": "529900SQMCERTBODY123"}]}  # fmt: skip
    assert (
        client.post("/api/v1/suppliers", json=requests.registration(other, key)).status_code == 201
    )
    feed = json.loads(json.dumps(FEED))
    feed["header"]["supplier"] = other
    return client.post("/api/v1/attestations", json=requests.attestation(feed, key).to_json())


def test_also_the_trust_root_requires_the_further_tokens_from_the_next_tree_size(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    """A further TSA protects against a log that backdates with its own TSA only when its
    tokens may not be left out: the trust root requires them of every checkpoint from the
    tree size after the one the log had when it began to use the TSA, in the bundle's
    checkpoint and in its logging one. By size, which the log signs, not by a time, which the
    log's own TSA would give."""
    plain = _plain(engine, tmp_path)
    key = Ed25519PrivateKey.generate()
    client = plain.test_client()
    assert (
        client.post(
            "/api/v1/suppliers", json=requests.registration(FEED["header"]["supplier"], key)
        ).status_code
        == 201
    )
    before = client.post("/api/v1/attestations", json=requests.attestation(FEED, key).to_json())
    assert before.status_code == 201, before.json
    app = _registry(engine, tmp_path, external_tsa, "also")
    served = app.test_client().get("/api/v1/trust-root").json
    assert served["additionalTsas"][0]["requiredFromTreeSize"] == 3  # after 2 entries
    assert "requiredUntilTreeSize" not in served["additionalTsas"][0]
    root = bundle.TrustRoot.from_json(served)
    # An entry logged before: its logging checkpoint (size 2) needs no further token.
    earlier = _verified(app, before.json["logIndex"])
    assert earlier.ok, earlier.steps
    answer = app.test_client().post(
        "/api/v1/attestations", json=requests.attestation(_feed(1), key).to_json()
    )
    assert answer.status_code == 201, answer.json
    made = bundle.Bundle.from_json(answer.json)
    assert made.logged_at is not None and len(made.logged_at.additional_timestamps) == 1
    report = bundle.verify(made, root)
    assert report.ok
    # Logged when every TSA says the checkpoint existed: the latest of their times.
    note = made.logged_at.checkpoint.encode()
    times = [
        timestamp.verify(made.logged_at.timestamp, note, root.tsa_ca).gen_time,
        timestamp.verify(
            made.logged_at.additional_timestamps[0], note, root.additional_tsas[0].ca
        ).gen_time,
    ]
    assert report.logged == max(times)

    stripped = dataclasses.replace(made, additional_timestamps=())
    failed = {s.name: s for s in bundle.verify(stripped, root).steps}
    assert not failed["additional timestamps"].ok
    assert (
        "(tree size 3) carries no valid token of the TSA" in failed["additional timestamps"].detail
    )
    assert "checkpoint from tree size 3 on" in failed["additional timestamps"].detail
    unlogged = dataclasses.replace(
        made, logged_at=dataclasses.replace(made.logged_at, additional_timestamps=())
    )
    failed = {s.name: s for s in bundle.verify(unlogged, root).steps}
    assert not failed["key valid when logged"].ok
    assert "logging checkpoint (tree size 3) carries no valid token" in (
        failed["key valid when logged"].detail
    )
    # A trust root that requires them only of larger trees lets the same bundle pass without.
    later = dataclasses.replace(
        root,
        additional_tsas=(dataclasses.replace(root.additional_tsas[0], required_from_size=4),),
    )
    passed = bundle.verify(stripped, later)
    assert passed.ok, passed.steps
    assert {s.name: s.detail for s in passed.steps}["additional timestamps"] == (
        "none required of a checkpoint of this size"
    )
    # Another process of the same registry finds the requirement as it is.
    again = _registry(engine, tmp_path, external_tsa, "also")
    assert again.test_client().get("/api/v1/trust-root").json == served


def test_a_registry_without_a_required_tsa_refuses_to_start_until_it_is_retired(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    """Its checkpoints would lack the tokens the trust root requires: it fails closed, and an
    operator ends the requirement explicitly. Bundles of both stretches then verify."""
    app = _registry(engine, tmp_path, external_tsa, "also")
    stamped = _attest(app)
    assert stamped.status_code == 201, stamped.json
    fingerprint = _fingerprint(external_tsa)
    with pytest.raises(RegistryError, match=f"not configured with \\(CA SHA-256 {fingerprint}\\)"):
        _plain(engine, tmp_path)
    retired = _retire(engine, tmp_path, fingerprint)
    assert retired.exit_code == 0, retired.output
    assert "no longer required after tree size 2" in retired.output
    again = _retire(engine, tmp_path, fingerprint)
    assert again.exit_code != 0 and "is required" in again.output

    plain = _plain(engine, tmp_path)
    served = plain.test_client().get("/api/v1/trust-root").json
    assert [
        (t["requiredFromTreeSize"], t["requiredUntilTreeSize"]) for t in served["additionalTsas"]
    ] == [(1, 2)]
    later = _attest_as_another(plain)
    assert later.status_code == 201, later.json
    for index in (stamped.json["logIndex"], later.json["logIndex"]):
        report = _verified(plain, index)
        assert report.ok, [(s.name, s.detail) for s in report.steps if not s.ok]
    assert plain.extensions["sqm"]["log"].fsck() == []


def test_fsck_finds_a_further_token_dropped_from_a_checkpoint_that_requires_it(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    from sqlalchemy import delete, func

    from sqm.registry.db import log_checkpoint_stamps

    app = _registry(engine, tmp_path, external_tsa, "also")
    assert _attest(app).status_code == 201
    log = app.extensions["sqm"]["log"]
    assert log.fsck() == []
    with engine.begin() as connection:
        newest = connection.execute(select(func.max(log_checkpoint_stamps.c.size))).scalar()
        connection.execute(
            delete(log_checkpoint_stamps).where(log_checkpoint_stamps.c.size == newest)
        )
    [problem] = log.fsck()
    assert problem.startswith(f"checkpoint {newest}: no token of the further TSA")
    assert problem.endswith("which the trust root requires of every checkpoint from tree size 1 on")


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"requiredFromTreeSize": "3"}, "requiredFromTreeSize must be a tree size"),
        ({"requiredFromTreeSize": True}, "requiredFromTreeSize must be a tree size"),
        ({"requiredFromTreeSize": 0}, "requiredFromTreeSize must be a tree size"),
        ({"requiredFromTreeSize": 5, "requiredUntilTreeSize": 4}, "no larger than it"),
        ({"requiredFromTreeSize": None, "requiredUntilTreeSize": 4}, "no larger than it"),
    ],
)
def test_a_trust_root_with_a_malformed_requirement_is_refused(
    engine: Engine,
    tmp_path: Path,
    external_tsa: tuple[str, Path, Outage],
    members: dict[str, Any],
    message: str,
) -> None:
    from sqm.trust import TrustError

    app = _registry(engine, tmp_path, external_tsa, "also")
    served = app.test_client().get("/api/v1/trust-root").json
    served["additionalTsas"][0].update(members)
    with pytest.raises(TrustError, match=r"additionalTsas\[1\]\.required") as refused:
        bundle.TrustRoot.from_json(served)
    assert message in str(refused.value)


def test_a_further_tsa_replaced_by_another_keeps_both_stretches_verifying(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    """A TSA retired and another configured: the trust root lists both with their stretches,
    and a bundle re-fetched for an entry of the first stretch (its logging checkpoint stamped
    by the first TSA, its newest by the second) verifies; a token of a TSA the trust root does
    not list is ignored, not a failure."""
    first = _registry(engine, tmp_path, external_tsa, "also")
    stamped = _attest(first)
    assert stamped.status_code == 201, stamped.json
    retired = _retire(engine, tmp_path, _fingerprint(external_tsa))
    assert retired.exit_code == 0, retired.output
    provider = create_app(RegistryConfig(data_dir=tmp_path / "second", origin="tsa-b.example"))
    with serving(provider) as base:
        second = _registry(
            engine,
            tmp_path,
            (f"{base}/api/v1/tsa", tmp_path / "second/keys/tsa-ca.crt", Outage(provider)),
            "also",
        )
        client = second.test_client()
        later = _attest_as_another(second)
        assert later.status_code == 201, later.json
        served = client.get("/api/v1/trust-root").json
        assert [
            (t.get("requiredFromTreeSize"), t.get("requiredUntilTreeSize"))
            for t in served["additionalTsas"]
        ] == [(1, 2), (3, None)]
        for index in (stamped.json["logIndex"], later.json["logIndex"]):
            report = _verified(second, index)
            assert report.ok, [(s.name, s.detail) for s in report.steps if not s.ok]
        # A verifier that pinned only the second TSA: the first one's token is ignored.
        root = bundle.TrustRoot.from_json(served)
        only_second = dataclasses.replace(root, additional_tsas=root.additional_tsas[1:])
        old = bundle.Bundle.from_json(
            client.get(f"/api/v1/bundles/{stamped.json['logIndex']}").json
        )
        assert bundle.verify(old, only_second).ok
        assert second.extensions["sqm"]["log"].fsck() == []


def test_a_token_dated_far_from_this_machines_clock_is_not_kept(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    """A bundle's logging time is the latest of its tokens' times: a further TSA whose clock ran
    a minute ahead would date an entry after a revocation it preceded. Such a token is not
    kept; the entry waits, as in an outage, until the clocks agree."""
    from datetime import timedelta

    from sqm.registry.timestampers import ExternalTSA

    app, key = _registered(engine, tmp_path, external_tsa)
    log, client = app.extensions["sqm"]["log"], app.test_client()
    external = log.timestampers[1]
    assert isinstance(external, ExternalTSA)
    external.clock = lambda: datetime.now(UTC) - timedelta(minutes=2)  # the TSA runs ahead
    envelope = requests.attestation(FEED, key).to_json()
    refused = client.post("/api/v1/attestations", json=envelope)
    assert refused.status_code == 503 and refused.json["error"] == "timestamp_unavailable"
    assert "one of the two clocks is off by more than 20 s" in refused.json["message"]
    assert log.waiting() == 1
    external.clock = lambda: datetime.now(UTC)
    again = client.post("/api/v1/attestations", json=envelope)
    assert again.status_code == 409 and again.json["error"] == "already_logged"
    assert log.waiting() == 0 and log.fsck() == []


def test_a_logging_checkpoint_past_an_ended_stretch_is_refused(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    """Once a stretch has ended, a log could cite a later checkpoint, outside every stretch,
    as an entry's logging checkpoint, and date it with its own TSA alone. The first checkpoint
    that held an entry logged within a stretch is no larger than the stretch's end."""
    stamped = _attest(_registry(engine, tmp_path, external_tsa, "also"))
    assert stamped.status_code == 201, stamped.json
    assert _retire(engine, tmp_path, _fingerprint(external_tsa)).exit_code == 0
    plain = _plain(engine, tmp_path)
    client = plain.test_client()
    key = Ed25519PrivateKey.generate()
    other = {**FEED["header"]["supplier"], "name": "Another", "identifiers": [
        {"scheme": "LEI", "code": "529900SQMCERTBODY123"}]}  # fmt: skip
    assert (
        client.post("/api/v1/suppliers", json=requests.registration(other, key)).status_code == 201
    )
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    honest = bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{stamped.json['logIndex']}").json)
    assert bundle.verify(honest, root).ok
    # The registration's checkpoint (size 3, past the stretch 1 to 2) also holds entry 1, and
    # proves consistent with the same newest checkpoint: cited as the logging checkpoint.
    later = client.get("/api/v1/log/checkpoint").get_data(as_text=True)
    token = plain.extensions["sqm"]["log"].latest().timestamp
    forged = dataclasses.replace(honest, logged_at=bundle.LoggedAt(later, token, ()))
    failed = {s.name: s for s in bundle.verify(forged, root).steps}
    assert not failed["key valid when logged"].ok
    assert "lies past the stretch" in failed["key valid when logged"].detail
    assert "within which entry 1 was logged" in failed["key valid when logged"].detail


def test_a_tsa_retired_before_it_stamped_anything_leaves_no_stretch(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    # The stretch began after the newest checkpoint and no checkpoint reached it: ending it
    # at that checkpoint made a trust root no verifier could read, and the TSA unusable.
    _registry(engine, tmp_path, external_tsa, "also")
    retired = _retire(engine, tmp_path, _fingerprint(external_tsa).upper())
    assert retired.exit_code == 0, retired.output
    plain = _plain(engine, tmp_path)
    served = plain.test_client().get("/api/v1/trust-root").json
    assert "additionalTsas" not in served
    again = _registry(engine, tmp_path, external_tsa, "also")
    served = again.test_client().get("/api/v1/trust-root").json
    assert served["additionalTsas"][0]["requiredFromTreeSize"] == 1
    assert _attest(again).status_code == 201
    assert again.extensions["sqm"]["log"].fsck() == []


def test_a_process_started_before_the_stretch_signs_nothing_in_it(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    """A process still running with the old settings (a rolling restart) would sign
    checkpoints without the token the trust root now requires: its entries wait instead, for
    a process with the log's settings."""
    old = _plain(engine, tmp_path)
    key = Ed25519PrivateKey.generate()
    body = requests.registration(FEED["header"]["supplier"], key)
    assert old.test_client().post("/api/v1/suppliers", json=body).status_code == 201
    new = _registry(engine, tmp_path, external_tsa, "also")
    envelope = requests.attestation(FEED, key).to_json()
    refused = old.test_client().post("/api/v1/attestations", json=envelope)
    assert refused.status_code == 503 and refused.json["error"] == "timestamp_unavailable"
    assert "another process started with other TSA settings" in refused.json["message"]
    logged = new.test_client().post("/api/v1/attestations", json=envelope)
    assert logged.status_code == 409 and logged.json["error"] == "already_logged"
    root = bundle.TrustRoot.from_json(new.test_client().get("/api/v1/trust-root").json)
    assert bundle.verify(bundle.Bundle.from_json(logged.json["bundle"]), root).ok
    assert new.extensions["sqm"]["log"].fsck() == []


def test_retire_tsa_refuses_a_folder_without_a_store_and_a_malformed_fingerprint(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from sqm.cli import main
    from sqm.registry.secrets import load_or_create

    load_or_create(tmp_path / "keys", "registry.test/log")
    runner = CliRunner()
    missing = runner.invoke(main, ["registry", "retire-tsa", "a" * 64, "--data", str(tmp_path)])
    assert missing.exit_code == 2 and "holds no registry.sqlite3" in missing.output
    assert not (tmp_path / "registry.sqlite3").exists()
    (tmp_path / "registry.sqlite3").touch()
    malformed = runner.invoke(main, ["registry", "retire-tsa", "xyz", "--data", str(tmp_path)])
    assert malformed.exit_code == 2 and "64 hex digits" in malformed.output


def test_fsck_finds_a_stretch_no_verifier_could_read(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    from sqlalchemy import update

    from sqm.registry.db import log_tsa_periods

    app = _registry(engine, tmp_path, external_tsa, "also")
    assert _attest(app).status_code == 201
    with engine.begin() as connection:
        connection.execute(update(log_tsa_periods).values(first_size=5, last_size=3))
    problems = app.extensions["sqm"]["log"].fsck()
    assert any("is 5 to 3: it must start at 1 or later and end no earlier" in p for p in problems)


def test_a_process_whose_tsa_was_retired_under_it_signs_nothing(
    engine: Engine, tmp_path: Path, external_tsa: tuple[str, Path, Outage]
) -> None:
    """retire-tsa is for a stopped registry; run beside a live process, and another process
    started without that TSA, the live one's checkpoints would still carry the retired TSA's
    token and fall in no stretch it stamps for: it signs nothing until restarted."""
    live = _registry(engine, tmp_path, external_tsa, "also")
    key = Ed25519PrivateKey.generate()
    body = requests.registration(FEED["header"]["supplier"], key)
    assert live.test_client().post("/api/v1/suppliers", json=body).status_code == 201
    assert _retire(engine, tmp_path, _fingerprint(external_tsa)).exit_code == 0
    provider = create_app(RegistryConfig(data_dir=tmp_path / "second", origin="tsa-b.example"))
    with serving(provider) as base:
        second = (f"{base}/api/v1/tsa", tmp_path / "second/keys/tsa-ca.crt", Outage(provider))
        other = _registry(engine, tmp_path, second, "also")
        envelope = requests.attestation(FEED, key).to_json()
        refused = live.test_client().post("/api/v1/attestations", json=envelope)
        assert refused.status_code == 503, refused.json
        assert "1 further TSA(s) now, 0 of them among the 1" in refused.json["message"]
        logged = other.test_client().post("/api/v1/attestations", json=envelope)
        assert logged.status_code == 409 and logged.json["error"] == "already_logged"
        assert other.extensions["sqm"]["log"].fsck() == []
