"""Smoke tests of the registry benchmarks: each script runs end to end at tiny sizes, on SQLite
and PostgreSQL, prints its figures, and leaves no database behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from sqlalchemy import create_engine, text

from tests.conftest import REPO

POSTGRES_ADMIN = os.environ.get(
    "SQM_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _databases_left(output: str) -> list[str]:
    """The databases the run created that still exist (it should drop each one)."""
    created = re.findall(r"created database (sqm_bench_\w+)", output)
    assert created, output
    admin = create_engine(POSTGRES_ADMIN)
    try:
        with admin.connect() as connection:
            names = set(connection.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        admin.dispose()
    return [name for name in created if name in names]


def test_registry_ingest_runs_on_both_backends_and_the_floor() -> None:
    # One worker, its threads (the default 6) sharing write transactions: a quick smoke run.
    output = _run(
        "registry_ingest.py",
        "--attestations", "12", "--clients", "2", "--workers", "1", "--suppliers", "3",
        "--records", "5",
    )  # fmt: skip
    assert "every feed validates without errors" in output
    assert re.search(r"compute ceiling in one process: [\d,]+ attestations/s", output)
    for backend in ("sqlite", "postgresql"):
        row = re.search(
            rf"^{backend} +12 +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +\d+ +[\d.]+", output, re.M
        )
        assert row, output
        # A verdict for each reading of the ceiling, each by its own ratio.
        verdicts = re.search(
            rf"^{backend}: ingest / ceiling\(1 process\) = ([\d.]+) \(target >= 0.5: (MET|NOT MET)\), "
            rf"ingest / ceiling\(\d cores?\) = ([\d.]+) \(target >= 0.5: (MET|NOT MET)\)",
            output,
            re.M,
        )
        assert verdicts, output
        for ratio, verdict in (verdicts.group(1, 2), verdicts.group(3, 4)):
            if abs(float(ratio) - 0.5) >= 0.0005:  # printed to three places
                assert verdict == ("MET" if float(ratio) >= 0.5 else "NOT MET"), output
    # Each run against the ceiling measured around it.
    assert len(re.findall(r"ceiling [\d,]+/s before the run, [\d,]+/s after it", output)) == 3
    assert output.count("12/12 answered 201; checkpoint size 15 = 3 registrations") == 2, output
    assert output.count("entries checked: intact") == 2, output
    # Read 2 s into the run, which a smoke run may not last: then it says so.
    splits = re.findall(r"^  client connections held by each worker.*: (.+)$", output, re.M)
    assert len(splits) == 3 and all(
        s == "not read" or sum(map(int, s.split(" / "))) <= 2 for s in splits
    ), output
    assert "FAILED" not in output
    # The floor: the same gunicorn serving only the ceiling's work, every feed accepted, set
    # against both readings of the ceiling without a verdict, and each backend against it.
    assert re.search(
        r"^compute +12 +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ +\d+ +[\d.]+ +[\d.]+ +-$", output, re.M
    )
    assert re.search(
        r"^compute \(the floor: .*\): served / ceiling\(1 process\) = [\d.]+, "
        r"served / ceiling\(1 core\) = [\d.]+;",
        output,
        re.M,
    ), output
    assert "12/12 answered 201; tracebacks in the server log: 0" in output
    assert len(re.findall(r"against the floor \(compute, .*\): [\d.]+ of its rate", output)) == 2
    assert _databases_left(output) == []


def test_log_proofs_runs_on_both_backends() -> None:
    output = _run(
        "log_proofs.py",
        "--entries", "3000", "--proofs", "40", "--batch", "1000",
        "--backends", "sqlite,postgresql",
    )  # fmt: skip
    assert output.count("built 3,000 entries") == 2, output
    assert output.count("check out against a tree recomputed in memory") == 2, output
    assert output.count("all 80 proofs verify") == 2, output
    for kind in ("inclusion proof", "consistency proof"):
        assert (
            len(re.findall(rf"^  {kind} +40 +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ \(", output, re.M)) == 2
        )
        assert len(re.findall(rf"{kind} at 3,000 entries: p50 [\d.]+ ms", output)) == 2
    assert re.search(r"target \(proofs < 1 ms at p99\): (MET|NOT MET)", output)
    assert _databases_left(output) == []
