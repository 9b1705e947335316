"""Seeding and `sqm serve` on a real socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
        command,
        cwd=REPO,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        note = first_answer(server, f"http://127.0.0.1:{port}/api/v1/log/checkpoint").decode()
        assert note.split("\n")[1] == "6"  # three key registrations and three attestations
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/log/checkpoint", timeout=5
        ) as response:
            assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/trust-root", timeout=5
        ) as response:
            assert json.load(response)["log"]["origin"] == "localhost/sqm/log/v0.1"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _environment(**variables: str) -> dict[str, str]:
    """This process's environment without its SQM_REGISTRY_* variables, plus ``variables``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("SQM_REGISTRY_")}
    return kept | variables


@contextmanager
def _sqm_serve(arguments: list[str], variables: dict[str, str]) -> Iterator[str]:
    """``sqm serve`` with ``arguments`` in an environment with ``variables``; its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sqm", "serve", "--port", str(port), *arguments],
        cwd=REPO,
        env=_environment(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        first_answer(server, f"{base}/api/v1/trust-root")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def _origin(base: str) -> str:
    with urllib.request.urlopen(f"{base}/api/v1/trust-root", timeout=5) as response:
        return str(json.load(response)["log"]["origin"])


def _verify_supplier(base: str, token: str) -> tuple[int, str]:
    """The status and error code of the operator's verification of an unknown supplier."""
    request = urllib.request.Request(
        f"{base}/api/v1/operator/suppliers/LEI:NO-SUCH-SUPPLIER/verification",
        data=json.dumps({"status": "verified"}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, ""
    except urllib.error.HTTPError as refusal:
        return refusal.code, str(json.load(refusal)["error"])


def test_sqm_serve_takes_its_configuration_from_the_environment(tmp_path: Path) -> None:
    # No --data nor --database: their defaults must not hide the variables.
    variables = {
        "SQM_REGISTRY_DATA": str(tmp_path / "env-data"),
        "SQM_REGISTRY_DATABASE": f"sqlite:///{tmp_path / 'env.sqlite3'}",
        "SQM_REGISTRY_ORIGIN": "example.test/env-log",
        "SQM_REGISTRY_OPERATOR_TOKEN": "env-token",
    }
    with _sqm_serve([], variables) as base:
        assert _origin(base) == "example.test/env-log"
        # The token is configured (not 403 operator_api_disabled) and checked (401 otherwise).
        assert _verify_supplier(base, "env-token") == (404, "no_such_supplier")
        assert _verify_supplier(base, "other-token") == (401, "unauthorised")
    assert (tmp_path / "env-data" / "keys" / "log.key").is_file()
    assert (tmp_path / "env.sqlite3").is_file()
    assert not (tmp_path / "env-data" / "registry.sqlite3").exists()


def test_sqm_serve_options_override_their_variables(tmp_path: Path) -> None:
    variables = {
        "SQM_REGISTRY_DATA": str(tmp_path / "env-data"),
        "SQM_REGISTRY_DATABASE": f"sqlite:///{tmp_path / 'env.sqlite3'}",
        "SQM_REGISTRY_OPERATOR_TOKEN": "env-token",
    }
    arguments = [
        "--data",
        str(tmp_path / "cli-data"),
        "--database",
        f"sqlite:///{tmp_path / 'cli.sqlite3'}",
    ]
    with _sqm_serve(arguments, variables) as base:
        # The variables the options do not cover still apply.
        assert _verify_supplier(base, "env-token") == (404, "no_such_supplier")
    assert (tmp_path / "cli-data" / "keys" / "log.key").is_file()
    assert (tmp_path / "cli.sqlite3").is_file()
    assert not (tmp_path / "env-data").exists()
    assert not (tmp_path / "env.sqlite3").exists()


def test_sqm_serve_help_names_the_variables() -> None:
    from click.testing import CliRunner

    from sqm.cli.main import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for name in (
        "DATA",
        "DATABASE",
        "ORIGIN",
        "OPERATOR_TOKEN",
        "INTEGRATE_EVERY",
        "INDEX_TRAIL",
        "TSA_URL",
        "TSA_CA",
        "TSA_MODE",
        "MAX_REQUEST_BYTES",
        "ISSUED_WINDOW_HOURS",
        "SPARQL_TIMEOUT",
        "SPARQL_MAX_RESULTS",
    ):
        assert f"SQM_REGISTRY_{name}" in result.output
