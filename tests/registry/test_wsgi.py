"""The production entry point (``gunicorn 'sqm.registry.wsgi:app'``) as a worker imports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROBE = """
import gc
import sqm.registry.wsgi as wsgi
print(type(wsgi.app).__name__, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_worker_freezes_what_it_made_at_start(tmp_path: Path) -> None:
    """The app and everything made with it are out of the collector's sight, so that a full
    collection under load does not walk them: the collector tracks almost nothing else."""
    env = {**os.environ, "SQM_REGISTRY_DATA": str(tmp_path / "registry")}
    env["SQM_REGISTRY_INTEGRATE_EVERY"] = "off"  # no indexer child
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    kind, frozen, tracked = done.stdout.split()
    assert kind == "Flask"
    assert int(frozen) > 20_000  # modules, schema, statements: tens of thousands
    assert int(tracked) < 1_000


def test_a_configuration_the_registry_refuses_stops_gunicorn_with_one_message(
    tmp_path: Path,
) -> None:
    """The operator reads why, once, and gunicorn stops rather than boot the worker again and
    again: before, a 40-line traceback carried the message twice."""
    env = {**os.environ, "SQM_REGISTRY_DATA": str(tmp_path / "registry")}
    env["SQM_REGISTRY_TSA_URL"] = "http://127.0.0.1:9/tsa"  # and no SQM_REGISTRY_TSA_CA
    gunicorn = Path(sys.executable).parent / "gunicorn"
    done = subprocess.run(
        [str(gunicorn), "-w", "1", "-b", "127.0.0.1:0", "sqm.registry.wsgi:app"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # gunicorn: a worker failed to boot
    message = "sqm registry: cannot start: an external TSA needs its CA certificate"
    assert done.stderr.count(message) == 1, done.stderr
    assert "Traceback" not in done.stderr
