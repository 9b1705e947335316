"""The ingest benchmark's floor: a WSGI app that does for each attestation only what the compute
ceiling counts (``ingest_compute.server_compute``: decode, verify the DSSE signature, validate
the feed, check the statement's subject) and answers 201, storing nothing.

    gunicorn -w 2 -k sqm.registry.balanced_worker.BalancedThreadWorker --threads 6 \\
        compute_server:app     # with SQM_BENCH_KEYS=FILE, the benchmarks' folder on PYTHONPATH

Served by the same gunicorn workers as the registry, it measures what HTTP under gunicorn costs
on top of the ceiling's work with nothing else: no registry with that configuration can ingest
faster. ``compute_server:flask_app`` is the same as a Flask app, as the registry is one: what
Flask adds to a request. ``SQM_BENCH_KEYS`` names a JSON file of the suppliers' raw Ed25519 public keys in
base64, by key id. ``GET`` of any path answers 200 (the harness's readiness check).
"""

from __future__ import annotations

import base64
import gc
import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, request
from ingest_compute import server_compute

ATTEST = "/api/v1/attestations"
KEYS = {
    key_id: Ed25519PublicKey.from_public_bytes(base64.b64decode(public))
    for key_id, public in json.loads(Path(os.environ["SQM_BENCH_KEYS"]).read_text()).items()
}

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def compute(body: bytes) -> tuple[int, dict[str, Any]]:
    """The ceiling's work on one request body: its status and answer."""
    try:
        _, errors = server_compute(body, KEYS, datetime.now(UTC))
    except Exception as exc:  # a benchmark's input: said in the answer, counted as not 201
        errors = [repr(exc)]
    if errors:
        return 422, {"errors": [str(e) for e in errors[:5]]}
    return 201, {"accepted": True}


STATUS = {200: "200 OK", 201: "201 Created", 404: "404 Not Found", 422: "422 Unprocessable Content"}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The floor as a bare WSGI app."""
    code, answer = 404, {}
    if environ["REQUEST_METHOD"] == "GET":
        code = 200
    elif environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == ATTEST:
        code, answer = compute(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    payload = json.dumps(answer).encode()
    status = STATUS[code]
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    start_response(status, headers)
    return [payload]


flask_app = Flask(__name__)


@flask_app.post(ATTEST)
def attest() -> tuple[dict[str, Any], int]:
    code, answer = compute(request.get_data())
    return answer, code


@flask_app.get("/<path:anything>")
def anything(anything: str) -> dict[str, Any]:
    return {}


# As the registry's workers do (registry/wsgi.py): what lives as long as the worker is frozen.
gc.collect()
gc.freeze()
