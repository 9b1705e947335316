"""Seeding and `sqm serve` on a real socket."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.seed import seed
from sqm.trust import bundle
from tests.conftest import EXAMPLES, REPO
from tests.registry.servers import first_answer, free_port


def test_seeding_logs_every_example_once_and_verifiably(tmp_path: Path) -> None:
    app = create_app(RegistryConfig(data_dir=tmp_path))
    ingest = app.extensions["sqm"]["ingest"]
    first = seed(ingest, EXAMPLES / "feeds", tmp_path / "seed-keys")
    assert [e["new"] for e in first] == [True, True, True]
    again = seed(ingest, EXAMPLES / "feeds", tmp_path / "seed-keys")
    assert [e["new"] for e in again] == [False, False, False]
    assert [e["logIndex"] for e in again] == [e["logIndex"] for e in first]
    client = app.test_client()
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    for entry in first:
        made = bundle.Bundle.from_json(client.get(f"/api/v1/bundles/{entry['logIndex']}").json)
        assert bundle.verify(made, root).ok
    assert app.extensions["sqm"]["log"].fsck() == []


def test_sqm_serve_answers_on_a_real_socket(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "sqm",
        "serve",
        "--port",
        str(port),
        "--data",
        str(tmp_path),
        "--seed",
    ]
    server = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        note = first_answer(server, f"http://127.0.0.1:{port}/api/v1/log/checkpoint").decode()
        assert note.split("\n")[1] == "6"  # three key registrations and three attestations
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/trust-root", timeout=5
        ) as response:
            assert json.load(response)["log"]["origin"] == "localhost/sqm/log/v0.1"
    finally:
        server.terminate()
        server.wait(timeout=10)
