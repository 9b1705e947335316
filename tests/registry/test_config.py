"""Settings from ``SQM_REGISTRY_*`` variables: each read, each refused clearly when malformed,
and each the one the registry applies."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from sqm.client import requests
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.errors import RegistryError
from tests.conftest import EXAMPLES


def test_the_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SQM_REGISTRY_")]:
        monkeypatch.delenv(name)
    unset = RegistryConfig.from_env()
    assert (unset.max_request_bytes, unset.issued_window_hours) == (4 * 1024 * 1024, 72.0)
    assert (unset.sparql_timeout_seconds, unset.sparql_max_results) == (5.0, 10_000)
    monkeypatch.setenv("SQM_REGISTRY_MAX_REQUEST_BYTES", "1048576")
    monkeypatch.setenv("SQM_REGISTRY_ISSUED_WINDOW_HOURS", "0.5")
    monkeypatch.setenv("SQM_REGISTRY_SPARQL_TIMEOUT", "2.5")
    monkeypatch.setenv("SQM_REGISTRY_SPARQL_MAX_RESULTS", "500")
    config = RegistryConfig.from_env()
    assert (config.max_request_bytes, config.issued_window_hours) == (1048576, 0.5)
    assert (config.sparql_timeout_seconds, config.sparql_max_results) == (2.5, 500)
    for name, bad in (
        ("SQM_REGISTRY_MAX_REQUEST_BYTES", "4MB"),
        ("SQM_REGISTRY_MAX_REQUEST_BYTES", "2.5"),
        ("SQM_REGISTRY_MAX_REQUEST_BYTES", "0"),
        ("SQM_REGISTRY_ISSUED_WINDOW_HOURS", "-1"),
        ("SQM_REGISTRY_ISSUED_WINDOW_HOURS", "inf"),
        ("SQM_REGISTRY_ISSUED_WINDOW_HOURS", "nan"),
        ("SQM_REGISTRY_SPARQL_MAX_RESULTS", "many"),
        ("SQM_REGISTRY_ISSUED_WINDOW_HOURS", "1e8"),  # before year 1: every attestation a 500
        ("SQM_REGISTRY_SPARQL_TIMEOUT", "1e10"),  # beyond the longest wait a lock takes
        ("SQM_REGISTRY_MAX_REQUEST_BYTES", str(2**40)),
    ):
        with monkeypatch.context() as patched:
            patched.setenv(name, bad)
            with pytest.raises(RegistryError, match=f"{name} must be .* above 0 and at most"):
                RegistryConfig.from_env()


def test_the_issued_at_window_from_the_environment_is_the_one_applied(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQM_REGISTRY_DATA", str(tmp_path / "registry"))
    monkeypatch.setenv("SQM_REGISTRY_DATABASE", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("SQM_REGISTRY_ISSUED_WINDOW_HOURS", "1")
    monkeypatch.setenv("SQM_REGISTRY_MAX_REQUEST_BYTES", "65536")
    monkeypatch.setenv("SQM_REGISTRY_INTEGRATE_EVERY", "off")
    app = create_app()
    client = app.test_client()
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    key = Ed25519PrivateKey.generate()
    registered = client.post(
        "/api/v1/suppliers", json=requests.registration(feed["header"]["supplier"], key)
    )
    assert registered.status_code == 201, registered.json
    feed["header"]["issued_at"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    late = client.post("/api/v1/attestations", json=requests.attestation(feed, key).to_json())
    assert (late.status_code, late.json["error"]) == (422, "issued_at_out_of_window")
    assert "within the last 1 hours" in late.json["message"]
    big = client.post("/api/v1/suppliers", data=b" " * 70_000, content_type="application/json")
    assert big.status_code == 413 and "65536 bytes" in big.json["message"]
