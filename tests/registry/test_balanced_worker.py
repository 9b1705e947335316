"""The registry's gunicorn worker class spreads keep-alive connections over the workers, and
answers the requests gunicorn itself refuses as JSON errors, like the app's."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
from gunicorn.config import Config
from gunicorn.http.errors import InvalidChunkSize, InvalidRequestLine

from sqm.registry.balanced_worker import BalancedThreadWorker
from tests.conftest import REPO
from tests.registry.servers import free_port

# Each worker leaves a file once it has loaded the app: connections made before both have
# booted would all go to the first, whatever the worker class.
READY_HOOK = """
from pathlib import Path

def post_worker_init(worker):
    (Path({folder!r}) / str(worker.pid)).touch()
"""


@contextmanager
def _gunicorn(tmp_path: Path, worker_class: str) -> Iterator[tuple[int, list[int]]]:
    """Two workers of ``worker_class``, two threads each; the port and the workers' pids."""
    ready = tmp_path / "ready"
    ready.mkdir()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(READY_HOOK.format(folder=str(ready)))
    port = free_port()
    env = {**os.environ, "SQM_REGISTRY_DATA": str(tmp_path / "registry")}
    env["SQM_REGISTRY_INTEGRATE_EVERY"] = "off"  # no indexer children
    command = [str(Path(sys.executable).parent / "gunicorn"), "-c", str(config), "-w", "2"]
    command += ["-k", worker_class, "--threads", "2", "-b", f"127.0.0.1:{port}"]
    server = subprocess.Popen(
        [*command, "sqm.registry.wsgi:app"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < 2:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "the workers did not boot within 60 s"
            time.sleep(0.1)
        yield port, [int(path.name) for path in ready.iterdir()]
    finally:
        server.terminate()
        server.wait(timeout=20)


def _held(port: int, workers: list[int]) -> list[int]:
    """How many connections on ``port`` each worker holds open, ascending: in any state but
    LISTEN, for a connection its client closed (CLOSE_WAIT) still counts in the worker's
    connection count until the worker has seen the close and closed its socket."""
    established: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] != "0A":
                established.add(f"socket:[{fields[9]}]")
    held = []
    for pid in workers:
        links = []
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            try:
                links.append(os.readlink(descriptor))
            except OSError:  # closed meanwhile
                continue
        held.append(sum(link in established for link in links))
    return sorted(held)


def _settled(port: int, workers: list[int], expected: int) -> list[int]:
    """The workers' connection counts once they add up to ``expected`` (within 5 s)."""
    deadline = time.monotonic() + 5
    while sum(held := _held(port, workers)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return held


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_keep_alive_connections_are_spread_over_the_workers(tmp_path: Path) -> None:
    with _gunicorn(tmp_path, "sqm.registry.balanced_worker.BalancedThreadWorker") as (
        port,
        workers,
    ):
        for _ in range(6):
            clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
            for client in clients:  # connected together, as a burst of new clients would
                client.connect()
            for client in clients:
                client.request("GET", "/api/v1/trust-root")
                response = client.getresponse()
                assert response.status == 200 and response.read()
            # Every worker has as many connections as threads: none queues while one idles.
            assert _settled(port, workers, 4) == [2, 2]
            for client in clients:
                client.close()
            assert _settled(port, workers, 0) == [0, 0]


WORKER = "sqm.registry.balanced_worker.BalancedThreadWorker"
LIMITS = Config()  # gunicorn's defaults, which the server below runs with


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with _gunicorn(tmp_path_factory.mktemp("refusals"), WORKER) as (port, _):
        yield port


def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes, bytes]:
    """Send ``raw`` and read until the server closes: the status, headers (lower-case names)
    and body of the first response, and whatever followed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(raw)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (x.split(":", 1) for x in lines)}
    length = int(headers["content-length"])
    return int(status_line.split()[1]), headers, rest[:length], rest[length:]


REQUEST = b"GET /api/v1/trust-root HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("raw", "status", "code", "named"),
    [
        pytest.param(
            b"GET /api/v1/trust-root?q=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414, "request_line_too_long", f"limit of {LIMITS.limit_request_line} bytes",
            id="a 10 kB request line",
        ),
        pytest.param(
            REQUEST + b"".join(b"X-Field-%d: v\r\n" % i for i in range(200)) + b"\r\n",
            431, "too_many_headers", f"limit of {LIMITS.limit_request_fields}",
            id="200 header fields",
        ),
        pytest.param(
            REQUEST + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n",
            431, "header_too_large", f"limit of {LIMITS.limit_request_field_size} bytes",
            id="a 20 kB header field",
        ),
        pytest.param(
            b"GARBAGE\r\n\r\n", 400, "malformed_request", "'GARBAGE'", id="a bad request line"
        ),
        pytest.param(
            REQUEST + b"Bad Name: v\r\n\r\n", 400, "malformed_request", "'Bad Name'",
            id="a header name with a space",
        ),
        pytest.param(
            b"POST /api/v1/suppliers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br\r\n\r\n",
            501, "unsupported_transfer_coding", "only the chunked transfer coding",
            id="a transfer coding gunicorn does not know",
        ),
    ],
)  # fmt: skip
def test_gunicorns_refusals_are_json_errors(
    port: int, raw: bytes, status: int, code: str, named: str
) -> None:
    answer = _exchange(port, raw)
    assert answer[0] == status, answer
    _, headers, body, after = answer
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    error = json.loads(body)
    assert set(error) == {"error", "message"} and error["error"] == code
    assert named in error["message"], error["message"]
    assert after == b""


def test_a_chunk_announcing_more_than_the_limit_is_refused_before_its_data(port: int) -> None:
    # Before, the app read on, waiting for its 4 MiB limit's worth, and the client for an answer.
    raw = b"POST /api/v1/suppliers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    raw += b"Transfer-Encoding: chunked\r\n\r\nffffffffff\r\n{"
    started = time.monotonic()
    status, headers, body, _ = _exchange(port, raw)
    assert time.monotonic() - started < 5
    assert (status, json.loads(body)["error"]) == (413, "request_too_large")
    assert "4194304 bytes" in json.loads(body)["message"]
    assert headers["connection"] == "close"


def test_a_malformed_chunk_after_the_answer_adds_no_second_answer(port: int) -> None:
    # The app refuses the content coding without reading the body; gunicorn, draining it, meets
    # the malformed chunk and used to write its own 400 behind the 415.
    raw = b"POST /api/v1/suppliers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    raw += b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    status, _, body, after = _exchange(port, raw)
    assert (status, json.loads(body)["error"]) == (415, "unsupported_content_encoding")
    assert after == b""


def test_a_well_formed_request_is_served_as_before(port: int) -> None:
    raw = REQUEST + b"Connection: close\r\n\r\n"
    status, headers, body, after = _exchange(port, raw)
    assert status == 200 and headers["content-type"] == "application/json"
    assert "verifierKey" in json.loads(body)["log"] and after == b""


@contextmanager
def _worker() -> Iterator[BalancedThreadWorker]:
    """A worker in this process (not started), its log a mock."""
    worker = BalancedThreadWorker(1, os.getppid(), [], None, 30, Config(), mock.Mock())
    try:
        yield worker
    finally:
        worker.tmp.close()


def _answered(worker: BalancedThreadWorker, exc: BaseException) -> tuple[bytes, dict[str, str]]:
    """The status line and the JSON error ``worker`` writes for ``exc``."""
    server, client = socket.socketpair()
    with server, client:
        worker.handle_error(None, server, ("127.0.0.1", 1), exc)
        server.close()
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/json\r\n" in head
    return head.split(b"\r\n")[0], json.loads(body)


def test_a_malformed_chunk_gunicorn_meets_is_a_malformed_body() -> None:
    with _worker() as worker:
        status, error = _answered(worker, InvalidChunkSize(b"zz"))
    assert status == b"HTTP/1.1 400 Bad Request" and error["error"] == "malformed_body"
    assert "RFC 9112 section 7.1" in error["message"]
    worker.log.warning.assert_called_once()  # gunicorn's own logging, as before


def test_a_failure_is_a_500_that_tells_nothing_of_its_cause() -> None:
    with _worker() as worker:
        status, error = _answered(worker, RuntimeError("secret /etc/sqm/key.pem"))
    assert status == b"HTTP/1.1 500 Internal Server Error" and error["error"] == "internal_error"
    assert "secret" not in error["message"] and "RuntimeError" not in error["message"]
    worker.log.exception.assert_called_once()  # the traceback goes to the log


def test_an_answer_to_a_closed_socket_raises_nothing() -> None:
    server, client = socket.socketpair()
    client.close()
    server.close()
    with _worker() as worker:
        worker.handle_error(None, server, ("127.0.0.1", 1), InvalidRequestLine("x"))
