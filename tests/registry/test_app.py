"""The registry app: the log and the TSA over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.log import TransparencyLog
from sqm.trust import merkle
from sqm.trust.checkpoint import open_note

ORIGIN = "registry.test/sqm/log"


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    config = RegistryConfig(
        data_dir=tmp_path / "data", database_url=url, origin=ORIGIN, max_request_bytes=4096
    )
    made = create_app(config)
    yield made
    log: TransparencyLog = made.extensions["sqm"]["log"]
    if log.engine.dialect.name == "postgresql":
        from sqm.registry.db import metadata

        metadata.drop_all(log.engine)
    log.engine.dispose()


def _log(app: Flask) -> TransparencyLog:
    log: TransparencyLog = app.extensions["sqm"]["log"]
    return log


def test_checkpoint_and_proofs_over_http(app: Flask) -> None:
    client = app.test_client()
    empty = client.get("/api/v1/log/checkpoint")
    assert empty.status_code == 404 and empty.json == {
        "error": "empty_log",
        "message": "the log has no checkpoint yet",
    }
    log = _log(app)
    for n in range(11):
        log.sequence(f"leaf {n}".encode())
    log.integrate()
    note = client.get("/api/v1/log/checkpoint").get_data(as_text=True)
    checkpoint = open_note(note, log.verifier)
    assert checkpoint.size == 11
    answer = client.get("/api/v1/log/entries/7").json
    assert answer is not None
    proof = [base64.b64decode(h) for h in answer["inclusionProof"]["hashes"]]
    merkle.verify_inclusion(
        merkle.leaf_hash(base64.b64decode(answer["leaf"])), 7, 11, proof, checkpoint.root
    )
    consistency = client.get("/api/v1/log/consistency?old=3&new=11").json
    assert consistency is not None
    hashes = [base64.b64decode(h) for h in consistency["hashes"]]
    merkle.verify_consistency(3, 11, hashes, log.root(3), checkpoint.root)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/log/consistency?old=3", 400, "missing_parameter"),
        ("/api/v1/log/consistency?old=x&new=2", 400, "invalid_parameter"),
        ("/api/v1/log/consistency?old=5&new=2", 400, "invalid_parameter"),
        ("/api/v1/log/consistency?old=1&new=99", 404, "no_such_tree"),
        ("/api/v1/log/entries/99", 404, "no_such_entry"),
        ("/api/v1/log/entries/0?size=-1", 400, "invalid_parameter"),
        # str.isdigit() holds for these, int() refuses them (or works a long while on them)
        ("/api/v1/log/entries/0?size=%C2%B2", 400, "invalid_parameter"),
        ("/api/v1/log/consistency?old=%C2%B2&new=1", 400, "invalid_parameter"),
        ("/api/v1/log/consistency?old=1&new=" + "9" * 5000, 400, "invalid_parameter"),
        ("/api/v1/search/suppliers?limit=%C2%B2", 400, "invalid_parameter"),
        ("/api/v1/search/suppliers?limit=" + "1" * 5000, 400, "invalid_parameter"),
        ("/api/v1/nowhere", 404, "not_found"),
    ],
)
def test_client_mistakes_are_json_4xx(app: Flask, path: str, status: int, code: str) -> None:
    log = _log(app)
    log.sequence(b"one")
    log.sequence(b"two")
    log.integrate()
    response = app.test_client().get(path)
    assert response.status_code == status
    assert response.json is not None and response.json["error"] == code


def test_the_tsa_answers_openssl(app: Flask, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_bytes(b"anything worth a timestamp\n")
    query = [
        "openssl",
        "ts",
        "-query",
        "-data",
        str(tmp_path / "data.txt"),
        "-sha256",
        "-cert",
        "-out",
        str(tmp_path / "q.tsq"),
    ]
    subprocess.run(query, check=True, capture_output=True)
    client = app.test_client()
    response = client.post(
        "/api/v1/tsa",
        data=(tmp_path / "q.tsq").read_bytes(),
        content_type="application/timestamp-query",
    )
    assert response.status_code == 200 and response.mimetype == "application/timestamp-reply"
    (tmp_path / "r.tsr").write_bytes(response.get_data())
    ca = tmp_path / "data" / "keys" / "tsa-ca.crt"
    verify = [
        "openssl",
        "ts",
        "-verify",
        "-queryfile",
        str(tmp_path / "q.tsq"),
        "-in",
        str(tmp_path / "r.tsr"),
        "-CAfile",
        str(ca),
    ]
    assert subprocess.run(verify, capture_output=True, text=True, check=False).returncode == 0
    wrong = client.post("/api/v1/tsa", data=b"x", content_type="application/json")
    assert (
        wrong.status_code == 415
        and wrong.json is not None
        and wrong.json["error"] == "unsupported_media_type"
    )
    huge = client.post("/api/v1/tsa", data=b"x" * 5000, content_type="application/timestamp-query")
    assert (
        huge.status_code == 413 and huge.json is not None and "4096 bytes" in huge.json["message"]
    )


def test_keys_survive_a_restart(tmp_path: Path) -> None:
    config = RegistryConfig(data_dir=tmp_path / "data", origin=ORIGIN)
    first, second = create_app(config), create_app(config)
    assert _log(first).verifier == _log(second).verifier
    key_file = tmp_path / "data" / "keys" / "log.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_large_answers_are_the_json_that_flask_would_send(tmp_path: Path) -> None:
    # Bundles are written by orjson (registry/blueprints/common.py): the same document as
    # jsonify's, keys sorted; what orjson refuses (an integer beyond 64 bits) still answers.
    import json

    from flask import jsonify

    from sqm.registry.blueprints.common import json_answer

    made = create_app(RegistryConfig(data_dir=tmp_path / "data", origin=ORIGIN))
    value = {"b": [1, 2.5, None, True], "a": {"z": "é\n\u2028", "y": ""}, "logIndex": 7}
    with made.app_context():
        flask_made = jsonify(value).get_data()
        answer = json_answer(value, 201)
        huge = json_answer({"n": 2**70}, 409)
    body = answer.get_data()
    assert answer.status_code == 201 and answer.mimetype == "application/json"
    assert json.loads(body) == json.loads(flask_made) == value
    assert body.endswith(b"}\n") and body.index(b'"a"') < body.index(b'"b"') < body.index(
        b'"logIndex"'
    )
    assert huge.status_code == 409 and json.loads(huge.get_data()) == {"n": 2**70}
    made.extensions["sqm"]["log"].engine.dispose()
