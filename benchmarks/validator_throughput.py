"""Validator throughput and memory, measured against other validators in the same run.

    python benchmarks/validator_throughput.py [--records 100000] [--memory-records 1000000]

Each contender runs in its own process on the same generated NDJSON feed; wall time and peak
RSS (from wait4) are measured per process, start-up included. Contenders:

- ``sqm validate``: all layers (syntax, structure, semantics, cross-record, plausibility), on
  every core (the default for feeds over 16 MB) and on one (``--jobs 1``);
- jsonschema-rs with orjson: structure only, each item against its section's definition;
- plain ``jsonschema`` (the reference validator): structure only, on a slice, scaled;
- ``linkml-validate``: the whole-document form of a slice, scaled.

Targets (issue 3): sqm / jsonschema-rs >= 0.5; sqm / linkml-validate >= 50; sqm's peak RSS
under 100 MB for 1,000,000 records.
"""

from __future__ import annotations

import argparse
import json
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


def run(args: list[str]) -> tuple[float, float, int]:
    """Run a command; return (wall seconds, peak RSS in MB, exit status).

    Peak RSS is read from /proc (VmHWM) while the process runs: wait4's ru_maxrss would also
    count the memory this benchmark process had when it forked the child.
    """
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    peak_kb = 0
    status_file = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.returncode not in (0, 1):
        raise SystemExit(f"{args[0]} failed ({process.returncode}): {stderr[-2000:]}")
    return seconds, peak_kb / 1024, process.returncode


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
    parser.add_argument("--worker", choices=["rs", "jsonschema"], help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        {"rs": worker_rs, "jsonschema": worker_jsonschema}[args.worker](args.path)
        return

    sys.path.insert(0, str(HERE))
    from generate_feed import write

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

        results = []
        for label, jobs in (("sqm validate, 2 cores", "0"), ("sqm validate, 1 core", "1")):
            command = [str(BIN / "sqm"), "validate", "--format", "json", "--jobs", jobs]
            seconds, rss, code = run([*command, "--now", NOW, str(feed)])
            note = "all layers" + ("" if code == 0 else ", FINDINGS")
            note += ", RSS of the main process" if jobs == "0" else ""
            results.append(Measured(label, lines, seconds, rss, note))
        seconds, rss, _ = run([sys.executable, __file__, "--worker", "rs", str(feed)])
        results.append(Measured("jsonschema-rs + orjson", lines, seconds, rss, "structure only"))
        seconds, rss, _ = run([sys.executable, __file__, "--worker", "jsonschema", str(small)])
        note = f"structure only, {sliced:,} records"
        results.append(Measured("jsonschema", small_lines, seconds, rss, note))
        linkml = [str(BIN / "linkml-validate"), "-s", "schema/src/sqm.yaml", "-C", "Feed"]
        seconds, rss, _ = run([*linkml, str(document)])
        note = f"{sliced:,} records as one document"
        results.append(Measured("linkml-validate", small_lines, seconds, rss, note))

        header = f"{'contender':24} {'items':>9} {'seconds':>8} {'items/s':>9} {'peak RSS':>9}"
        print(header + "  sqm(2 cores)/x")
        best = results[0].rate
        for item in results:
            print(
                f"{item.name:24} {item.records:9,} {item.seconds:8.2f} {item.rate:9,.0f} "
                f"{item.peak_rss_mb:6.0f} MB  {best / item.rate:12.2f}  {item.note}"
            )
        rs, linkml_rate = results[2].rate, results[4].rate
        print(
            f"sqm / jsonschema-rs = {best / rs:.2f} on 2 cores, {results[1].rate / rs:.2f} on 1 (target >= 0.5)"
        )
        print(f"sqm / linkml-validate = {best / linkml_rate:.0f} (target >= 50)")

    if args.memory_records:
        with tempfile.TemporaryDirectory() as tmp:
            big = Path(tmp) / "big.ndjson"
            write(big, args.memory_records)
            lines, _ = count_records(big)
            command = [str(BIN / "sqm"), "validate", "--format", "json", "--jobs", "1"]
            seconds, rss, _ = run([*command, "--now", NOW, str(big)])
            print(
                f"sqm validate --jobs 1 on {args.memory_records:,} records ({big.stat().st_size / 1e9:.2f} GB): "
                f"{seconds:.1f} s, {lines / seconds:,.0f} items/s, peak RSS {rss:.0f} MB (target < 100 MB)"
            )


if __name__ == "__main__":
    main()
