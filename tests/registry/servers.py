"""Starting a real server process in a test and waiting until it answers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def first_answer(server: subprocess.Popen[str], url: str, seconds: float = 60) -> bytes:
    """The body of the first successful GET of ``url`` while ``server`` runs."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                return body
        except OSError:
            if server.poll() is not None:
                output = server.stdout.read() if server.stdout else ""
                raise AssertionError(f"the server exited: {output}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer from {url} within {seconds} s") from None
            time.sleep(0.2)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve a WSGI app with Werkzeug's threaded server on a free port; its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
