"""Inputs that once reached the database unchecked: NUL characters (PostgreSQL refuses them in
text) and hand-made cursors. Each is a clean 4xx on both databases."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import Engine

from sqm.client import requests
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.seed import seed
from sqm.trust import bundle, dsse
from tests.conftest import EXAMPLES


@pytest.fixture
def seeded(engine: Engine, tmp_path: Path) -> Iterator[Flask]:
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    yield app


def _cursor(key: object, supplier: object, client: object, args: str) -> str:
    real = client.get(f"/api/v1/search/suppliers?limit=1&{args}").json["next"]  # type: ignore[attr-defined]
    data = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))
    data.update(k=key, s=supplier)
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("args", "key", "supplier"),
    [
        ("sort=issued_at", "not a date", "LEI:X"),
        ("sort=issued_at", {"a": 1}, "LEI:X"),
        ("sort=name", 5, "LEI:X"),
        ("sort=supplier", "LEI:A", "LEI:\x00X"),
        ("sort=name", "Kraft\x00", "LEI:X"),
    ],
)
def test_a_hand_edited_cursor_is_refused(
    seeded: Flask, args: str, key: object, supplier: object
) -> None:
    client = seeded.test_client()
    cursor = _cursor(key, supplier, client, args)
    answer = client.get(f"/api/v1/search/suppliers?limit=1&{args}&cursor={cursor}")
    assert (answer.status_code, answer.json["error"]) == (400, "invalid_cursor")


def test_nul_characters_are_refused_at_the_door(seeded: Flask) -> None:
    client = seeded.test_client()
    cases = [
        client.get("/api/v1/suppliers/LEI:%00X"),
        client.get("/api/v1/search/suppliers?country=%00"),
        client.post(
            "/api/v1/suppliers",
            data=json.dumps({"supplier": {"name": "A\u0000B"}}),
            content_type="application/json",
        ),
    ]
    for answer in cases:
        assert (answer.status_code, answer.json["error"]) == (400, "nul_character")
    # Binary bodies may hold zero bytes: an RFC 3161 query still reaches the TSA.
    from sqm.trust import timestamp

    query = timestamp.request(b"checkpoint", 7)
    stamped = client.post("/api/v1/tsa", data=query, content_type="application/timestamp-query")
    assert stamped.status_code == 200


def test_a_feed_holding_nul_is_refused_before_storage(seeded: Flask) -> None:
    client = seeded.test_client()
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    feed["header"]["supplier"]["identifiers"][0]["code"] = "529900SQMNULTEST0078"
    key = Ed25519PrivateKey.generate()
    assert (
        client.post(
            "/api/v1/suppliers", json=requests.registration(feed["header"]["supplier"], key)
        ).status_code
        == 201
    )
    feed["sites"][0]["name"] = "Stuttgart\u0000plant"
    answer = client.post("/api/v1/attestations", json=requests.attestation(feed, key).to_json())
    assert (answer.status_code, answer.json["error"]) == (422, "nul_character")


def test_a_payload_that_is_not_utf8_is_refused_before_storage(seeded: Flask) -> None:
    # json.loads takes a surrogate encoded as UTF-8; under a key that a later duplicate
    # overrides it leaves no trace in the parsed statement, so every other check passed, and
    # the entry was logged with an envelope that could not be read back (its bundle a 500,
    # the index stuck at it for good).
    client = seeded.test_client()
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    feed["header"]["supplier"]["identifiers"][0]["code"] = "529900SQMUTF8TEST029"
    key = Ed25519PrivateKey.generate()
    registered = client.post(
        "/api/v1/suppliers", json=requests.registration(feed["header"]["supplier"], key)
    )
    assert registered.status_code == 201
    text = json.dumps(bundle.statement(feed)).encode()
    assert text.startswith(b'{"_type": ')
    payload = b'{"_type": "\xed\xa0\x80", ' + text[1:]  # the later "_type" wins
    assert json.loads(payload) == bundle.statement(feed)
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, key, requests.key_id(key))
    before = client.get("/api/v1/log/checkpoint").get_data()
    answer = client.post("/api/v1/attestations", json=envelope.to_json())
    assert (answer.status_code, answer.json["error"]) == (400, "malformed_statement")
    assert "not UTF-8" in answer.json["message"]
    unpaired = text.replace(b'"Stuttgart', b'"\xed\xa0\x80Stuttgart', 1)
    assert unpaired != text
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, unpaired, key, requests.key_id(key))
    answer = client.post("/api/v1/attestations", json=envelope.to_json())
    assert (answer.status_code, answer.json["error"]) == (400, "malformed_statement")
    assert "not UTF-8" in answer.json["message"]
    invalid = text.replace(b'"Stuttgart', b'"\xffStuttgart', 1)
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, invalid, key, requests.key_id(key))
    answer = client.post("/api/v1/attestations", json=envelope.to_json())
    assert (answer.status_code, answer.json["error"]) == (400, "malformed_statement")
    assert "utf-8" in answer.json["message"].lower()
    assert client.get("/api/v1/log/checkpoint").get_data() == before  # nothing logged


def test_a_payload_naming_a_member_twice_is_refused(seeded: Flask) -> None:
    """A first-wins reader and a last-wins reader of the same signed payload would see two
    different feeds: the registry validates one, so it takes neither (I-JSON, RFC 7493)."""
    client = seeded.test_client()
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    feed["header"]["supplier"]["identifiers"][0]["code"] = "529900SQMUTF8TEST029"
    key = Ed25519PrivateKey.generate()
    registration = requests.registration(feed["header"]["supplier"], key)
    assert client.post("/api/v1/suppliers", json=registration).status_code == 201
    text = json.dumps(bundle.statement(feed)).encode()
    before = client.get("/api/v1/log/checkpoint").get_data()
    for payload in (
        text.replace(
            b'"predicate": {', b'"predicate": {"header": {"evil": true}}, "predicate": {', 1
        ),
        text.replace(b'"sequence": 14', b'"sequence": 99, "sequence" : 14', 1),
        text.replace(b'"name": "', b'"name": "x", "name": "', 1),
    ):
        assert payload != text
        envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, key, requests.key_id(key))
        answer = client.post("/api/v1/attestations", json=envelope.to_json())
        assert (answer.status_code, answer.json["error"]) == (400, "malformed_statement")
        assert "twice" in answer.json["message"]
    assert client.get("/api/v1/log/checkpoint").get_data() == before


@pytest.mark.parametrize(
    ("feed_part", "status", "error", "message"),
    [
        # Parsing it raised RecursionError, which reached the client as a 500.
        (b"[" * 100_000 + b"]" * 100_000, 400, "malformed_statement", "nests arrays or objects"),
        # json.loads takes a surrogate encoded as UTF-8; printing it raised UnicodeEncodeError.
        # Such bytes are not UTF-8, which is said first.
        (b'"\xed\xa0\x80"', 400, "malformed_statement", "not UTF-8"),
        # Python's refusal of a 5,000-digit integer advised sys.set_int_max_str_digits().
        (b"9" * 5000, 400, "malformed_statement", "more than 4300 digits"),
    ],
)
def test_a_statement_with_no_feed_to_digest_is_a_clear_4xx(
    seeded: Flask, feed_part: bytes, status: int, error: str, message: str
) -> None:
    key = Ed25519PrivateKey.generate()
    payload = (
        b'{"_type": "https://in-toto.io/Statement/v1", "predicateType": "'
        + bundle.PREDICATE_TYPE.encode()
        + b'", "predicate": {"header": {}, "records": '
        + feed_part
        + b"}}"
    )
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, key, requests.key_id(key))
    answer = seeded.test_client().post("/api/v1/attestations", json=envelope.to_json())
    assert (answer.status_code, answer.json["error"]) == (status, error)
    assert message in answer.json["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/suppliers",
        "/api/v1/attestations",
        "/api/v1/endorsements",
        "/api/v1/keys/abc/revocation",
        "/api/v1/suppliers/LEI:X/keys",
    ],
)
def test_a_body_nested_too_deeply_to_parse_is_a_400(seeded: Flask, path: str) -> None:
    # Flask's JSON parser raised RecursionError, which reached the client as a 500.
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = seeded.test_client().post(path, data=deep, content_type="application/json")
    assert answer.status_code == 400, answer.json
    assert answer.json["error"] == "malformed_json"


def test_a_body_with_a_number_of_thousands_of_digits_is_a_clear_400(seeded: Flask) -> None:
    body = b'{"supplier": ' + b"9" * 5000 + b"}"
    answer = seeded.test_client().post(
        "/api/v1/suppliers", data=body, content_type="application/json"
    )
    assert (answer.status_code, answer.json["error"]) == (400, "malformed_json")
    assert "more than 4300 digits" in answer.json["message"]
    assert "set_int_max_str_digits" not in answer.json["message"]


def test_pages_get_html_errors_and_the_api_json(seeded: Flask) -> None:
    client = seeded.test_client()
    page = client.get("/no-such-page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404 and api.json["error"] == "not_found"


def _chunked(client: Any, path: str, body: bytes, content_type: str) -> Any:
    """POST ``body`` as a chunked stream: no Content-Length, as gunicorn hands it over."""
    import io

    return client.post(
        path,
        input_stream=io.BytesIO(body),
        environ_overrides={"wsgi.input_terminated": True},
        headers={"Transfer-Encoding": "chunked", "Content-Type": content_type},
    )


def test_a_chunked_body_meets_the_same_door_as_a_measured_one(seeded: Flask) -> None:
    client = seeded.test_client()
    log = seeded.extensions["sqm"]["log"]
    size = log.size()
    oversized = b'{"supplier": "' + b"a" * (4 * 1024 * 1024) + b'"}'
    for path, content_type, body in (
        ("/api/v1/suppliers", "application/json", oversized),
        ("/api/v1/tsa", "application/timestamp-query", b"\x30" * (4 * 1024 * 1024 + 1)),
    ):
        # Werkzeug alone cut such a stream at the limit and went on with the rest.
        answer = _chunked(client, path, body, content_type)
        assert answer.status_code == 413 and answer.json["error"] == "request_too_large"
        assert "4194304 bytes" in answer.json["message"]
    nul = _chunked(
        client, "/api/v1/suppliers", b'{"supplier": {"name": "a\\u0000b"}}', "application/json"
    )
    assert nul.status_code == 400 and nul.json["error"] == "nul_character"
    fine = _chunked(client, "/api/v1/suppliers", b'{"supplier": 7}', "application/json")
    assert fine.status_code == 422 and fine.json["error"] == "invalid_supplier"
    assert log.size() == size and log.waiting() == 0


def test_paths_take_ascii_digits_and_405_names_the_methods(seeded: Flask) -> None:
    client = seeded.test_client()
    assert client.get("/api/v1/log/entries/3").status_code == 200
    for digits in ("%D9%A3", "%EF%BC%93"):  # Arabic-Indic and fullwidth three
        answer = client.get(f"/api/v1/log/entries/{digits}")
        assert answer.status_code == 404 and answer.json["error"] == "not_found"
    wrong = client.delete("/api/v1/suppliers")
    assert wrong.status_code == 405
    assert set(wrong.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert f"Allowed here: {wrong.headers['Allow']}." in wrong.json["message"]


def test_a_query_string_that_is_not_utf8_is_400(seeded: Flask) -> None:
    client = seeded.test_client()
    for path, kind in (("/api/v1/log/checkpoint", "json"), ("/suppliers", "page")):
        answer = client.get(path, environ_overrides={"QUERY_STRING": "x=\xff"})
        assert answer.status_code == 400
        if kind == "json":
            assert answer.json["error"] == "malformed_query_string"
        assert "not UTF-8" in answer.get_data(as_text=True)


def test_codings_the_registry_does_not_read_are_refused(seeded: Flask) -> None:
    client = seeded.test_client()
    size = seeded.extensions["sqm"]["log"].size()
    for headers, status, code in (
        ({"Transfer-Encoding": "gzip, chunked"}, 501, "unsupported_transfer_coding"),
        ({"Content-Encoding": "gzip"}, 415, "unsupported_content_encoding"),
    ):
        answer = client.post(
            "/api/v1/suppliers", data=b'{"supplier": 7}', content_type="application/json",
            headers=headers,
        )  # fmt: skip
        assert answer.status_code == status and answer.json["error"] == code
    assert seeded.extensions["sqm"]["log"].size() == size


@pytest.mark.parametrize(
    ("depth", "status", "error"),
    [(600, 422, "invalid_feed"), (950, 400, "malformed_statement")],
)
def test_a_signed_feed_nested_too_deeply_is_a_clear_4xx(
    seeded: Flask, depth: int, status: int, error: str
) -> None:
    # 600 levels: within what the payload's parsers take, beyond what the validator's walk
    # could (a 500); 950: beyond the parsers too.
    client = seeded.test_client()
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    feed["header"]["supplier"]["identifiers"][0]["code"] = "529900SQMDEEPNEST131"
    feed["header"]["issued_at"] = datetime.now(UTC).isoformat()
    key = Ed25519PrivateKey.generate()
    registered = client.post(
        "/api/v1/suppliers", json=requests.registration(feed["header"]["supplier"], key)
    )
    assert registered.status_code == 201, registered.json
    nested: dict[str, Any] = {}
    innermost = nested
    for _ in range(depth):
        innermost["a"] = {}
        innermost = innermost["a"]
    feed["header"]["x_nested"] = nested
    answer = client.post("/api/v1/attestations", json=requests.attestation(feed, key).to_json())
    assert (answer.status_code, answer.json["error"]) == (status, error), answer.json
    if status == 422:
        codes = {finding["code"] for finding in answer.json["findings"]}
        assert "SQM-X001" in codes, answer.json
    else:
        assert "too deeply to parse" in answer.json["message"]
