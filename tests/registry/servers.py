"""Starting a real server process in a test and waiting until it answers."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


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
