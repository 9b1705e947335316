"""`sqm verify --registry` against a registry that answers wrongly: a local HTTP server serves
crafted answers about a real bundle (built with the trust core), as a compromised or broken
registry might. An answer that does not hold up is a failed step (exit 1); a registry that
cannot be asked now gives no verdict (exit 2); neither is a traceback."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from sqm.cli import main
from tests.trust.builders import GrowingLog

Answer = tuple[int, str, bytes]  # status, content type, body
RAW = -1  # a status meaning: write the body as it is, no HTTP around it


def _json(value: Any, status: int = 200) -> Answer:
    return status, "application/json", json.dumps(value).encode()


class FakeRegistry:
    """A held bundle of a log that grew since, and a server that answers for the registry."""

    def __init__(self) -> None:
        self.log = GrowingLog()
        self.held = self.log.bundle()
        for n in range(3):
            self.log.append(f"a later entry {n}".encode())
        self.answers: dict[str, Answer] = {
            "/api/v1/bundles/": _json(self.log.bundle().to_json()),
            "/api/v1/log/consistency": _json(
                {"hashes": [base64.b64encode(h).decode() for h in self.log.consistency(3, 6)]}
            ),
        }

    def handler(self) -> type[BaseHTTPRequestHandler]:
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, kind, body = next(
                    answer for prefix, answer in answers.items() if self.path.startswith(prefix)
                )
                if status == RAW:
                    self.wfile.write(body)
                    return
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeRegistry, Callable[[], Result]]]:
    registry = FakeRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), registry.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    held, root = tmp_path / "held.json", tmp_path / "root.json"
    root.write_text(json.dumps(registry.log.trust_root().to_json()))

    def verify() -> Result:
        held.write_text(json.dumps(registry.held.to_json()))
        url = f"http://127.0.0.1:{server.server_address[1]}"
        return CliRunner().invoke(
            main, ["verify", str(held), "--trust-root", str(root), "--registry", url]
        )

    try:
        yield registry, verify
    finally:
        server.shutdown()
        server.server_close()


def test_the_fake_registry_answers_as_the_registry_does(fake: Any) -> None:
    _, verify = fake
    result = verify()
    assert result.exit_code == 0, result.output
    assert "the current tree (size 6) extends the bundle's (size 3)" in result.output


BUNDLES, PROOF = "/api/v1/bundles/", "/api/v1/log/consistency"


@pytest.mark.parametrize(
    ("path", "answer", "step", "reason"),
    [
        (BUNDLES, (200, "text/html", b"<html>hello</html>"), "entry unchanged", "not_json"),
        (BUNDLES, _json(None), "entry unchanged", "not a bundle"),
        (BUNDLES, _json({"error": "gone", "message": "x"}, 410), "entry unchanged", "410 gone"),
        (BUNDLES, (200, "application/json", b"[" * 200_000), "entry unchanged", "not_json"),
        (PROOF, _json({"error": "no_such_tree", "message": "x"}, 404), "current log", "404"),
        (PROOF, _json({"hashes": "abc"}), "current log", "not a consistency proof"),
        (PROOF, _json({"hashes": ["!!!"]}), "current log", "not a consistency proof"),
        (PROOF, _json({"hashes": [1, None]}), "current log", "not a consistency proof"),
        (PROOF, _json({"hashes": [base64.b64encode(b"x" * 31).decode()]}), "current log", ""),
    ],
)
def test_an_answer_that_does_not_hold_up_is_a_failed_step(
    fake: Any, path: str, answer: Answer, step: str, reason: str
) -> None:
    registry, verify = fake
    registry.answers[path] = answer
    result = verify()
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith(f"FAIL  {step}") and reason in failed[0]
    assert "bundle NOT verified" in result.output


@pytest.mark.parametrize(
    "answer",
    [
        _json({"error": "internal", "message": "boom"}, 500),
        (429, "text/html", b"<html>slow down</html>"),
        (RAW, "", b"garbage\r\n\r\n"),  # not HTTP
        (RAW, "", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"),  # cut off
    ],
)
def test_a_registry_that_cannot_be_asked_now_gives_no_verdict(fake: Any, answer: Answer) -> None:
    registry, verify = fake
    registry.answers[BUNDLES] = answer
    result = verify()
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert "bundle verified" not in result.output and "PASS" not in result.output


def test_a_checkpoint_no_encoder_takes_is_a_failed_step(fake: Any) -> None:
    registry, verify = fake
    current = registry.log.bundle().to_json()
    current["checkpoint"] = "\ud800" + current["checkpoint"]
    registry.answers[BUNDLES] = _json(current)
    result = verify()
    assert result.exit_code == 1, result.output
    assert "FAIL  registry's current checkpoint" in result.output


def test_a_revocation_the_saved_bundle_proves_may_not_vanish(fake: Any) -> None:
    registry, verify = fake
    registry.log.revoke("2027-01-01T00:00:00Z")  # after the logging: the attestation stands
    registry.held = registry.log.bundle()
    for n in range(2):
        registry.log.append(f"an entry after the revocation {n}".encode())
    withheld = registry.log.bundle()
    registry.answers[BUNDLES] = _json({**withheld.to_json(), "keyRevocation": None})
    registry.answers[PROOF] = _json(
        {"hashes": [base64.b64encode(h).decode() for h in registry.log.consistency(7, 9)]}
    )
    result = verify()
    assert result.exit_code == 1, result.output
    assert "FAIL  key not revoked before logging: the bundle proves a revocation" in result.output
    registry.answers[BUNDLES] = _json(withheld.to_json())
    assert verify().exit_code == 0
