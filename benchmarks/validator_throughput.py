"""Validator throughput and memory, measured against other validators in the same run.

    python benchmarks/validator_throughput.py [--records 100000] [--memory-records 1000000]
                                              [--repeat 1]

Each contender runs in its own process on the same generated NDJSON feed; wall time and peak
RSS are measured per process, start-up included (``--repeat N`` keeps each contender's
fastest of N runs). Contenders:

- ``sqm validate``: all layers (syntax, structure, semantics, cross-record, plausibility), on
  every core (the default for feeds over 16 MB: worker processes examine the lines, the main
  process settles them) and on one (``--jobs 1``);
- jsonschema-rs with orjson: structure only, each item against its section's definition;
- plain ``jsonschema`` (the reference validator): structure only, on a slice, scaled;
- ``linkml-validate``: the whole-document form of a slice, scaled.

Memory: the peak RSS column is the process started; for the parallel validator the note adds
its workers' peaks (which count the pages they share with the main process again). With
``--memory-records``, a feed that large is checked on one core (the figure the target is about)
and on every core, where the peak PSS of all processes together is reported too.

Targets (issue 3): sqm / jsonschema-rs >= 0.5; sqm / linkml-validate >= 50; sqm's peak RSS
under 100 MB for 1,000,000 records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
NOW = "2026-11-27T12:00:00Z"


@dataclass
class Measured:
    name: str
    records: int
    seconds: float
    peak_rss_mb: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.records / self.seconds


@dataclass
class Run:
    """One contender's run: wall time, exit status and memory.

    ``main_mb`` is the peak RSS (VmHWM) of the process started. With worker processes (the
    parallel validator), ``tree_rss_mb`` is the peak of the RSS of all live processes added up,
    which counts the pages the workers share with the main process (copy-on-write after fork)
    once per process: an upper bound; ``tree_pss_mb`` is the peak of their PSS added up (shared
    pages divided among the processes sharing them), sampled only when asked (reading it costs
    CPU). ``processes`` is the most processes that ran at once.
    """

    seconds: float
    status: int
    main_mb: float
    processes: int = 1
    tree_rss_mb: float = 0.0
    tree_pss_mb: float = 0.0


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(x) for x in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def _field(path: str, name: str) -> int:
    """A "Name:  123 kB" field of a /proc file, in kB (0 if the process is gone)."""
    try:
        with Path(path).open() as handle:
            for line in handle:
                if line.startswith(name):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run(args: list[str], pss: bool = False) -> Run:
    """Run a command; return its wall time, exit status and memory (see :class:`Run`).

    Memory is read from /proc while the processes run (every 10 ms; 50 ms with ``pss``):
    wait4's ru_maxrss would also count the memory this benchmark process had when it forked
    the child.
    """
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    main = processes = tree_rss = tree_pss = 0
    while process.poll() is None:
        pids, todo = [], [process.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo += _children(pid)
        main = max(main, _field(f"/proc/{process.pid}/status", "VmHWM:"))
        processes = max(processes, len(pids))
        tree_rss = max(tree_rss, sum(_field(f"/proc/{p}/status", "VmRSS:") for p in pids))
        if pss:
            tree_pss = max(tree_pss, sum(_field(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
        time.sleep(0.05 if pss else 0.01)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode not in (0, 1):
        raise SystemExit(f"{args[0]} failed ({process.returncode}): {stderr[-2000:]}")
    return Run(
        seconds, process.returncode, main / 1024, processes, tree_rss / 1024, tree_pss / 1024
    )


def machine_load() -> str:
    """The load average and the share of the CPUs idle during one second, for the report (other
    work on the machine slows the parallel run first)."""

    def times() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]

    before = times()
    time.sleep(1)
    delta = [b - a for a, b in zip(before, times(), strict=True)]
    idle = (delta[3] + delta[4]) / max(sum(delta), 1)
    averages = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average {averages}, {idle:.0%} of the CPUs idle"


def worker_rs(path: str) -> None:
    """Structure only with jsonschema-rs and orjson, item by item."""
    import orjson

    from sqm.validator.layers.structure import _part

    parts = {}
    invalid = 0
    with Path(path).open("rb") as handle:
        for line in handle:
            [(section, item)] = orjson.loads(line).items()
            part = parts.get(section) or parts.setdefault(section, _part("core", section))
            invalid += not part.fast.is_valid(item)
    print(invalid)


def worker_jsonschema(path: str) -> None:
    """Structure only with the reference jsonschema validator, item by item."""
    from sqm.validator.layers.structure import _part

    parts = {}
    invalid = 0
    with Path(path).open("rb") as handle:
        for line in handle:
            [(section, item)] = json.loads(line).items()
            part = parts.get(section) or parts.setdefault(section, _part("core", section))
            invalid += any(True for _ in part.reference.iter_errors(item))
    print(invalid)


def as_document(source: Path, target: Path) -> None:
    """An NDJSON feed as one JSON document (for linkml-validate)."""
    document: dict[str, object] = {}
    with source.open("rb") as reader:
        for line in reader:
            [(section, item)] = json.loads(line).items()
            if section == "header":
                document["header"] = item
            else:
                document.setdefault(section, []).append(item)  # type: ignore[union-attr]
    target.write_text(json.dumps(document))


def count_records(path: Path) -> tuple[int, int]:
    lines = records = 0
    with path.open("rb") as handle:
        for line in handle:
            lines += 1
            records += b'_records"' in line[:40]
    return lines, records


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--slice", type=int, default=10_000, help="records for the slow contenders")
    parser.add_argument(
        "--memory-records",
        type=int,
        default=0,
        help="also measure sqm's peak RSS on a feed this large",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each contender this many times, keep the best"
    )
    parser.add_argument("--worker", choices=["rs", "jsonschema"], help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        {"rs": worker_rs, "jsonschema": worker_jsonschema}[args.worker](args.path)
        return

    sys.path.insert(0, str(HERE))
    from generate_feed import write

    print(f"before the runs: {machine_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "feed.ndjson"
        write(feed, args.records)
        lines, records = count_records(feed)
        size = feed.stat().st_size
        print(
            f"feed: {records:,} records, {lines:,} lines, {size / 1e6:.1f} MB ({size / lines:.0f} bytes per line)"
        )
        # The slow contenders get a smaller feed of the same make-up (declarations scale too).
        small = Path(tmp) / "slice.ndjson"
        write(small, args.slice)
        sliced = args.slice
        document = Path(tmp) / "slice.json"
        as_document(small, document)
        small_lines, _ = count_records(small)

        cores = os.cpu_count() or 1

        def best(command: list[str], pss: bool = False) -> Run:
            """The fastest of ``--repeat`` runs (every contender alike)."""
            runs = [run(command, pss) for _ in range(args.repeat)]
            return min(runs, key=lambda r: r.seconds)

        results = []
        sqm = [str(BIN / "sqm"), "validate", "--format", "json", "--now", NOW]
        for label, jobs in ((f"sqm validate, {cores} cores", "0"), ("sqm validate, 1 core", "1")):
            measured = best([*sqm, "--jobs", jobs, str(feed)])
            note = "all layers" + ("" if measured.status == 0 else ", FINDINGS")
            if measured.processes > 1:
                note += (
                    f"; RSS of the main process ({measured.processes} processes at most: "
                    f"{measured.tree_rss_mb:.0f} MB together, shared pages counted in each)"
                )
            results.append(Measured(label, lines, measured.seconds, measured.main_mb, note))
        measured = best([sys.executable, __file__, "--worker", "rs", str(feed)])
        rs = Measured("jsonschema-rs + orjson", lines, measured.seconds, measured.main_mb)
        rs.note = "structure only"
        results.append(rs)
        measured = best([sys.executable, __file__, "--worker", "jsonschema", str(small)])
        note = f"structure only, {sliced:,} records"
        results.append(
            Measured("jsonschema", small_lines, measured.seconds, measured.main_mb, note)
        )
        linkml = [str(BIN / "linkml-validate"), "-s", "schema/src/sqm.yaml", "-C", "Feed"]
        measured = best([*linkml, str(document)])
        note = f"{sliced:,} records as one document"
        results.append(
            Measured("linkml-validate", small_lines, measured.seconds, measured.main_mb, note)
        )

        header = f"{'contender':24} {'items':>9} {'seconds':>8} {'items/s':>9} {'peak RSS':>9}"
        print(header + "  sqm(all cores)/x")
        fastest = results[0].rate
        for item in results:
            print(
                f"{item.name:24} {item.records:9,} {item.seconds:8.2f} {item.rate:9,.0f} "
                f"{item.peak_rss_mb:6.0f} MB  {fastest / item.rate:12.2f}  {item.note}"
            )
        linkml_rate = results[4].rate
        print(
            f"sqm / jsonschema-rs = {fastest / rs.rate:.2f} on {cores} cores, "
            f"{results[1].rate / rs.rate:.2f} on 1 (target >= 0.5)"
        )
        print(f"sqm / linkml-validate = {fastest / linkml_rate:.0f} (target >= 50)")

    if args.memory_records:
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "big.ndjson"
            write(big, args.memory_records)
            lines, _ = count_records(big)
            gigabytes = big.stat().st_size / 1e9
            sqm = [str(BIN / "sqm"), "validate", "--format", "json", "--now", NOW]
            one = run([*sqm, "--jobs", "1", str(big)])
            print(
                f"sqm validate --jobs 1 on {args.memory_records:,} records ({gigabytes:.2f} GB): "
                f"{one.seconds:.1f} s, {lines / one.seconds:,.0f} items/s, "
                f"peak RSS {one.main_mb:.0f} MB (target < 100 MB)"
            )
            every = run([*sqm, "--jobs", "0", str(big)], pss=True)
            print(
                f"sqm validate on {cores} cores, same feed: {every.seconds:.1f} s, "
                f"{lines / every.seconds:,.0f} items/s; peak RSS of the main process "
                f"{every.main_mb:.0f} MB; of all {every.processes} processes added up "
                f"{every.tree_rss_mb:.0f} MB (pages shared with the main process counted in "
                f"each), peak PSS added up {every.tree_pss_mb:.0f} MB (shared pages divided "
                f"among the processes sharing them)"
            )
    print(f"after the runs: {machine_load()}")


if __name__ == "__main__":
    main()
