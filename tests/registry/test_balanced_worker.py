"""The registry's gunicorn worker class spreads keep-alive connections over the workers."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
