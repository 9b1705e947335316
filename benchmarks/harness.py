"""What the registry benchmarks share: the registry under gunicorn on a free port, every worker
booted before the clock starts, and stopped with the benchmark, even when it is killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
POSTGRES_ADMIN = os.environ.get(
    "SQM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# Each gunicorn worker leaves a file once it has loaded the app.
GUNICORN_CONFIG = """
from pathlib import Path

def post_worker_init(worker):
    Path({folder!r}, f"ready-{{worker.pid}}").touch()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def die_with_parent() -> None:
    """In the server's process, before gunicorn starts: end it (SIGTERM) when the benchmark
    ends, even by SIGKILL, as a test's timeout does (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


@contextlib.contextmanager
def gunicorn(
    scratch: Path,
    settings: dict[str, str],
    workers: int,
    options: list[str],
    boot_seconds: float,
    app: str = "sqm.registry.wsgi:app",
) -> Iterator[tuple[int, Path]]:
    """``gunicorn -w workers [options] APP`` (the registry's ``sqm.registry.wsgi:app`` unless
    said) on a free port, configured by the ``SQM_REGISTRY_*`` ``settings`` only (and the
    benchmarks' folder on ``PYTHONPATH``, for an app of theirs), its files in ``scratch``;
    yields (port, log file) once every worker has booted and the app answers ``GET
    /api/v1/trust-root``, and stops the server's whole process group on the way out."""
    ready = scratch / "ready"
    ready.mkdir()
    config = scratch / "gunicorn.conf.py"
    config.write_text(GUNICORN_CONFIG.format(folder=str(ready)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQM_REGISTRY_")} | settings
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    port = free_port()
    log_path = scratch / "gunicorn.log"
    command = [str(BIN / "gunicorn"), "-c", str(config), "-w", str(workers), *options]
    command += ["--pid", str(scratch / "gunicorn.pid")]  # for server_cpu()
    command += ["-b", f"{HOST}:{port}", app]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    try:
        deadline = time.monotonic() + boot_seconds
        while len(list(ready.iterdir())) < workers:
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"gunicorn did not start ({server.poll()}):\n{tail}")
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://{HOST}:{port}/api/v1/trust-root", timeout=60):
            pass
        yield port, log_path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def server_cpu(scratch: Path) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the processes of the server started by
    :func:`gunicorn` in ``scratch`` (it leads its own process group): by role, "workers"
    (gunicorn's workers and master) and "indexer" (the workers' indexing children); and
    "database": every PostgreSQL server process on this machine (on SQLite the database
    works inside the server's processes)."""
    leader = int((scratch / "gunicorn.pid").read_text())
    tick = os.sysconf("SC_CLK_TCK")
    used = {"workers": 0.0, "indexer": 0.0, "database": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, fields = (entry / "stat").read_text().rsplit(")", 1)
            command = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        numbers = fields.split()
        if name.endswith("(postgres"):
            role = "database"
        elif int(numbers[2]) == leader:  # the process group (proc(5): field 5)
            role = "indexer" if b"multiprocessing" in command else "workers"
        else:
            continue
        used[role] += (int(numbers[11]) + int(numbers[12])) / tick  # utime, stime
    return used


def connections_by_worker(scratch: Path, port: int) -> list[int]:
    """How many established client connections each gunicorn worker of the server started in
    ``scratch`` holds on ``port``, largest first (read from ``/proc``: the workers' socket
    inodes against ``/proc/net/tcp*``). gunicorn hands a keep-alive connection to whichever
    worker accepts it, so a run's clients may split unevenly between the workers."""
    leader = int((scratch / "gunicorn.pid").read_text())
    established: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # TCP_ESTABLISHED
                established.add(fields[9])  # the socket's inode
    counts = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
            if int(fields[2]) != leader or b"multiprocessing" in command:
                continue  # not in the server's process group, or an indexer child
            descriptors = list((entry / "fd").iterdir())
        except OSError:  # the process ended meanwhile
            continue
        links = []
        for descriptor in descriptors:
            try:
                links.append(str(descriptor.readlink()))
            except OSError:  # closed meanwhile
                continue
        counts.append(sum(1 for link in links if link[8:-1] in established))
    return sorted(counts, reverse=True)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the run, dropped afterwards whatever happens."""
    name = f"sqm_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        print(f"  created database {name}")
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        print(f"  dropped database {name}")
