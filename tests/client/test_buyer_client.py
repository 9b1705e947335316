"""The buyer's side of the client and `sqm query`, against a live registry on both databases:
hits come back only when their log entries are proven, and a lying registry is caught."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from sqm.cli import main
from sqm.client import RegistryClient
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.seed import seed
from sqm.trust.bundle import TrustRoot
from sqm.trust.errors import VerificationError
from tests.conftest import EXAMPLES
from tests.registry.servers import serving

KRAFTWERK = "LEI:529900SQMKRAFTWERK41"


class Liar:
    """WSGI middleware that rewrites the registry's search answers with ``lie``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lie: Callable[[dict[str, Any]], None] | None = None

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if self.lie is None or not environ["PATH_INFO"].startswith("/api/v1/search"):
            return self.app(environ, start)
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        answer = json.loads(b"".join(self.app(environ, keep)))
        self.lie(answer)
        body = json.dumps(answer).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def registry(engine: Engine, tmp_path: Path) -> Iterator[tuple[str, Liar, Path]]:
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    root = tmp_path / "trust-root.json"
    root.write_text(json.dumps(app.extensions["sqm"]["log"].trust_root().to_json()))
    liar = Liar(app)
    with serving(liar) as base:
        yield base, liar, root


def _client(registry: tuple[str, Liar, Path]) -> RegistryClient:
    base, _, root = registry
    return RegistryClient(base, TrustRoot.from_json(json.loads(root.read_text())))


def test_search_returns_proven_hits_and_verified_claims(registry: tuple[str, Liar, Path]) -> None:
    client = _client(registry)
    page = client.search(["capability_records.cpk>=1.33"], country="DE")
    assert [hit.supplier for hit in page.hits] == [KRAFTWERK]
    hit = page.hits[0]
    assert hit.matches[0].minimum == 1.54 and hit.matches[0].values == 4
    assert page.checkpoint is not None and page.checkpoint.size > hit.log_index
    feed, report = client.claims(hit.log_index)
    assert (
        report.ok and feed["header"]["supplier"]["identifiers"][0]["code"] == "529900SQMKRAFTWERK41"
    )
    assert len(list(client.search_all())) == 3
    assert client.supplier(KRAFTWERK)["latest"]["logIndex"] == hit.log_index


@pytest.mark.parametrize(
    ("lie", "message"),
    [
        (
            lambda a: a["hits"][0].update(supplier="LEI:SOMEONEELSE000000000"),
            "not an attestation by",
        ),
        (lambda a: a["hits"][0]["proof"]["hashes"].reverse(), "inclusion"),
        (lambda a: a["hits"][0].update(logIndex=a["hits"][0]["logIndex"] - 1), "inclusion"),
        (
            lambda a: a["checkpoint"].update(
                note=a["checkpoint"]["note"].replace("\n6\n", "\n7\n", 1)
            ),
            "signature",
        ),
        (lambda a: a["hits"][0].pop("proof"), "without a proof"),
        (lambda a: a["hits"][0].update(previousIndex=0), "another previous entry"),
    ],
)
def test_a_lying_registry_is_caught(
    registry: tuple[str, Liar, Path], lie: Callable[[dict[str, Any]], None], message: str
) -> None:
    registry[1].lie = lie
    with pytest.raises(VerificationError, match=message):
        _client(registry).search(country="DE")


def test_sqm_query_suppliers_and_claims(registry: tuple[str, Liar, Path]) -> None:
    base, _, root = registry
    at = ["--registry", base, "--trust-root", str(root)]
    runner = CliRunner()
    found = runner.invoke(
        main,
        ["query", "suppliers", "--where", "capability_records.cpk>=1.33", "--format", "json", *at],
    )
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert [h["supplier"] for h in hits] == [KRAFTWERK, "LEI:724500SQMAGROFOODS94"]
    text = runner.invoke(main, ["query", "suppliers", "--all", *at])
    assert text.exit_code == 0 and "3 suppliers; every hit's log entry verified" in text.output
    claims = runner.invoke(main, ["query", "claims", str(hits[0]["log_index"]), *at])
    assert claims.exit_code == 0, claims.output
    assert json.loads(claims.stdout)["header"]["sequence"] == 14
    bad = runner.invoke(main, ["query", "suppliers", "--where", "cpk is great", *at])
    assert bad.exit_code == 1 and "invalid_condition" in bad.output
    lied = runner.invoke(main, ["query", "supplier", "LEI:NOBODY", *at])
    assert lied.exit_code == 1 and "no_such_supplier" in lied.output


def test_a_bundle_of_another_entry_is_not_taken_for_the_one_asked(
    registry: tuple[str, Liar, Path],
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sqm.client.errors import ClientError

    client = _client(registry)
    hit = client.search(["capability_records.cpk>=1.33"], country="DE").hits[0]
    other, _ = client.bundle(hit.log_index)
    logged = other.to_json()
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    feed["header"]["sequence"] += 1
    # A registry (broken or lying) that answers with a verified bundle of an older entry.
    client.transport.request = lambda method, path, body=None: (201, logged)  # type: ignore[method-assign]
    with pytest.raises(ClientError, match="does not hold the envelope submitted"):
        client.attest(feed, Ed25519PrivateKey.generate())
    with pytest.raises(ClientError, match=f"asked for the bundle of log entry {hit.log_index + 1}"):
        client.bundle(hit.log_index + 1)
