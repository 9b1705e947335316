"""Nothing acknowledged is lost: SIGKILL during a burst from several clients to two gunicorn
workers, then a restart shows every acknowledged entry, no duplicates, and a clean fsck; on
SQLite and on PostgreSQL (a fresh database, dropped after)."""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.trust import bundle, dsse
from tests.conftest import EXAMPLES, REPO, fresh_postgres_database
from tests.registry.servers import first_answer, free_port

FEED = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
SUBMISSIONS = 48
CLIENTS = 4


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The registry's database URL: None for SQLite in the data folder, or a fresh PostgreSQL
    database of its own (gunicorn's workers and the restarted registry share it), dropped after
    even with connections of killed workers still open."""
    if request.param == "sqlite":
        yield None
    else:
        with fresh_postgres_database() as url:
            yield url


def test_sigkill_during_a_burst_loses_nothing_acknowledged(
    tmp_path: Path, database: str | None
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    env = {**os.environ, "SQM_REGISTRY_DATA": str(tmp_path)}
    env.pop("SQM_REGISTRY_DATABASE", None)
    if database is not None:
        env["SQM_REGISTRY_DATABASE"] = database
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    server = subprocess.Popen(
        [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "sqm.registry.wsgi:app"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _burst_then_check(tmp_path, database, server, base)
    finally:
        if server.poll() is None:  # a failure before the kill: no server left behind
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def _burst_then_check(
    tmp_path: Path, database: str | None, server: subprocess.Popen[str], base: str
) -> None:
    first_answer(server, f"{base}/trust-root")
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    supplier = "LEI:529900SQMKRAFTWERK41"
    status, _ = _post(
        f"{base}/suppliers",
        {
            "supplier": FEED["header"]["supplier"],
            "publicKey": base64.b64encode(public).decode(),
            "proofOfPossession": base64.b64encode(
                key.sign(bundle.registration_message(supplier, public))
            ).decode(),
        },
    )
    assert status == 201

    def envelope(sequence: int) -> dict[str, Any]:
        feed = copy.deepcopy(FEED)
        feed["header"]["sequence"] = sequence
        feed["header"]["previous_feed"]["sequence"] = sequence - 1
        feed["header"]["issued_at"] = datetime.now(UTC).isoformat()
        payload = json.dumps(bundle.statement(feed)).encode()
        return dsse.sign(bundle.PAYLOAD_TYPE, payload, key, bundle.key_id(public)).to_json()

    acknowledged: dict[int, str] = {}
    refused: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(offset: int) -> None:
        for sequence in range(100 + offset, 100 + SUBMISSIONS, CLIENTS):
            if killed.is_set():
                return
            body = envelope(sequence)
            try:
                code, answer = _post(f"{base}/attestations", body)
            except (OSError, ValueError):
                continue  # the server died under this request: not acknowledged
            if code != 201 and not killed.is_set():
                with lock:
                    refused.append((code, answer))
            if code == 201:
                digest = json.loads(base64.b64decode(answer["leaf"]))["payloadSha256"]
                with lock:
                    acknowledged[answer["logIndex"]] = digest
                    if len(acknowledged) >= SUBMISSIONS // 2 and not killed.is_set():
                        killed.set()
                        os.killpg(server.pid, signal.SIGKILL)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    server.wait(timeout=30)
    assert refused == [], "the registry refused good submissions"
    assert killed.is_set(), "the burst finished before the kill"
    assert len(acknowledged) >= SUBMISSIONS // 2

    # The registry after a restart: integrate whatever was sequenced but not yet integrated.
    app = create_app(RegistryConfig(data_dir=tmp_path, database_url=database))
    log = app.extensions["sqm"]["log"]
    try:
        _check_after_restart(log, acknowledged)
    finally:
        log.engine.dispose()


def _check_after_restart(log: Any, acknowledged: dict[int, str]) -> None:
    while log.integrate() is not None:
        pass
    assert log.fsck() == []
    for index, digest in acknowledged.items():
        leaf = json.loads(log.leaf(index))
        assert leaf["kind"] == "attestation" and leaf["payloadSha256"] == digest
    leaves = [json.loads(log.leaf(i)) for i in range(log.size())]
    attested = [(i, leaf) for i, leaf in enumerate(leaves) if leaf["kind"] == "attestation"]
    digests = [leaf["payloadSha256"] for _, leaf in attested]
    assert len(digests) == len(set(digests)), "an attestation was logged twice"
    # The supplier's chain is linear: each attestation names the one logged just before it.
    assert [leaf["previousIndex"] for _, leaf in attested] == [None] + [i for i, _ in attested[:-1]]
