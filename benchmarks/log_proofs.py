"""Inclusion and consistency proofs of the registry's log at 1,000,000 entries.

    python benchmarks/log_proofs.py [--entries 1000000] [--proofs 2000] [--backends sqlite]
        [--batch 100000]

Builds a real log of ``--entries`` entries with the registry's own ``TransparencyLog``
(``registry/log.py``) in a temporary folder (SQLite; with ``--backends sqlite,postgresql`` also
in a fresh PostgreSQL database, dropped afterwards). Sequencing a million entries one
``sequence()`` call (one commit) at a time would take hours, so the entries are bulk-inserted
into ``log_pending`` in chunks, one transaction each, and integrated by the registry's real
integration code, ``log.integrate(limit=--batch)``: leaf and subtree hashes, one signed and
RFC 3161 timestamped checkpoint per batch. The leaves are small synthetic byte strings, the
canonical JSON of ``{"index": i, "kind": "benchmark"}``; proofs do not depend on leaf size.

Then, against the full tree: ``--proofs`` random inclusion proofs (``log.inclusion_proof``)
and as many consistency proofs from a random older size (``log.consistency_proof``), each
verified with ``sqm.trust.merkle`` against roots computed independently in memory (a
``MemoryTree`` of the same leaves), the full root also against the signed checkpoint; the run
aborts if any proof fails. The baseline, measured in the same run on the same store: one
single-row primary-key SELECT of a leaf (``log.leaf``), the floor of any lookup of stored data.

Target (the registry issue): inclusion and consistency proofs under 1 ms at 1,000,000 entries.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqm.registry.config import RegistryConfig
from sqm.registry.db import log_pending, make_engine
from sqm.registry.log import TransparencyLog
from sqm.registry.secrets import load_or_create
from sqm.trust import TrustError, merkle, timestamp
from sqm.trust.canonical import canonical

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import POSTGRES_ADMIN, postgres_database

TARGET_MS = 1.0
CHUNK = 50_000  # rows per bulk-insert transaction


def leaf(index: int) -> bytes:
    return canonical({"index": index, "kind": "benchmark"})


@dataclass
class Built:
    sequenced_s: float
    integrated_s: float
    batches: int


def build(log: TransparencyLog, entries: int, batch: int) -> Built:
    """Bulk-sequence ``entries`` leaves, then integrate them ``batch`` at a time."""
    started = time.perf_counter()
    received = datetime.now(UTC)
    for start in range(0, entries, CHUNK):
        rows = [
            {"leaf": leaf(i), "received_at": received, "chain": None}
            for i in range(start, min(entries, start + CHUNK))
        ]
        with log.engine.begin() as connection:
            connection.execute(log_pending.insert(), rows)
    sequenced = time.perf_counter()
    batches = 0
    progress = sys.stdout.isatty()
    while (signed := log.integrate(limit=batch)) is not None:
        batches += 1
        if progress:
            print(f"  integrated {signed.checkpoint.size:,} entries", end="\r", flush=True)
    integrated = time.perf_counter()
    if progress:
        print(" " * 60, end="\r")
    return Built(sequenced - started, integrated - sequenced, batches)


@dataclass
class Timed:
    name: str
    seconds: list[float]
    lengths: list[int]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return 1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    @property
    def mean(self) -> float:
        return 1000 * sum(self.seconds) / len(self.seconds)


def timed(name: str, count: int, operation: Callable[[int], int]) -> Timed:
    """Time ``operation(n)`` for n in range(count); it returns a proof length (or 0)."""
    seconds, lengths = [], []
    for number in range(count):
        start = time.perf_counter()
        length = operation(number)
        seconds.append(time.perf_counter() - start)
        lengths.append(length)
    return Timed(name, seconds, lengths)


def measure(backend: str, url: str, folder: Path, args: argparse.Namespace) -> bool:
    """Build the log on one store, time proofs and the baseline, print them; True if the
    target is met."""
    config = RegistryConfig(data_dir=folder, database_url=url)
    keys = load_or_create(folder / "keys", config.origin)
    engine = make_engine(url)
    try:
        log = TransparencyLog(engine, config.origin, keys.log_key, keys.authority)
        built = build(log, args.entries, args.batch)
        size = log.size()
        rate = size / (built.sequenced_s + built.integrated_s)
        print(
            f"  built {size:,} entries in {built.sequenced_s + built.integrated_s:.1f} s "
            f"({rate:,.0f} entries/s): bulk insert into log_pending {built.sequenced_s:.1f} s, "
            f"log.integrate {built.integrated_s:.1f} s in {built.batches} batches of up to "
            f"{args.batch:,} (one signed, timestamped checkpoint each)"
        )
        if size != args.entries:
            raise SystemExit(f"ABORT: the log holds {size} entries, expected {args.entries}")

        # An independent tree of the same leaves, in memory, for every root the proofs need.
        tree = merkle.MemoryTree()
        for index in range(size):
            tree.append(leaf(index))
        signed = log.latest()
        assert signed is not None
        timestamp.verify(signed.timestamp, signed.note.encode(), keys.authority.ca_certificate)
        root = tree.root()
        if signed.checkpoint.size != size or signed.checkpoint.root != root:
            raise SystemExit("ABORT: the signed checkpoint does not match the recomputed tree")
        print(
            "  the newest checkpoint's signature, timestamp and root check out against a tree "
            "recomputed in memory"
        )

        # Proofs as a registry process serves them the first time: every subtree hash read
        # from the store (a registry process remembers the recent ones, see registry/log.py).
        log = TransparencyLog(
            engine, config.origin, keys.log_key, keys.authority, remembered_nodes=0
        )
        rng = random.Random(args.seed)
        indexes = [rng.randrange(size) for _ in range(args.proofs)]
        olds = [rng.randrange(1, size) for _ in range(args.proofs)]
        hashes = [merkle.leaf_hash(leaf(i)) for i in indexes]
        inclusion: list[list[bytes]] = []
        consistency: list[list[bytes]] = []

        def include(n: int) -> int:
            inclusion.append(log.inclusion_proof(indexes[n], size))
            return len(inclusion[-1])

        def extend(n: int) -> int:
            consistency.append(log.consistency_proof(olds[n], size))
            return len(consistency[-1])

        def select(n: int) -> int:
            if log.leaf(indexes[n]) != leaf(indexes[n]):
                raise SystemExit(f"ABORT: entry {indexes[n]} is not the leaf stored")
            return 0

        for n in range(min(50, args.proofs)):  # warm-up: connections, statement caches
            log.inclusion_proof(indexes[n], size)
            log.consistency_proof(olds[n], size)
            log.leaf(indexes[n])
        results = [
            timed("inclusion proof", args.proofs, include),
            timed("consistency proof", args.proofs, extend),
            timed("PK select of a leaf", args.proofs, select),
        ]
        old_roots = [tree.root(old) for old in olds]

        def verify_inclusion(n: int) -> int:
            merkle.verify_inclusion(hashes[n], indexes[n], size, inclusion[n], root)
            return 0

        def verify_consistency(n: int) -> int:
            merkle.verify_consistency(olds[n], size, consistency[n], old_roots[n], root)
            return 0

        try:
            checks = [
                timed("verify inclusion", args.proofs, verify_inclusion),
                timed("verify consistency", args.proofs, verify_consistency),
            ]
        except TrustError as exc:
            raise SystemExit(f"ABORT: a proof does not verify: {exc}") from exc

        baseline = results[2]
        print(
            f"  {'operation':20} {'count':>6} {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>8} "
            f"{'hashes (max)':>12} {'p50 / select':>12}"
        )
        for item in results:
            lengths = (
                f"{sum(item.lengths) / len(item.lengths):6.1f} ({max(item.lengths):2})"
                if item is not baseline
                else f"{'':12}"
            )
            ratio = item.percentile(0.5) / baseline.percentile(0.5)
            note = f"{ratio:12.2f}" if item is not baseline else f"{'baseline':>12}"
            print(
                f"  {item.name:20} {len(item.seconds):6,} {item.percentile(0.5):7.3f} "
                f"{item.percentile(0.99):7.3f} {item.mean:8.3f} {lengths:>12} {note}"
            )
        print(
            f"  all {2 * args.proofs:,} proofs verify (sqm.trust.merkle, client side): inclusion "
            f"{checks[0].mean:.3f} ms, consistency {checks[1].mean:.3f} ms mean"
        )
        met = True
        for item in results[:2]:
            ok = item.percentile(0.99) < TARGET_MS
            met = met and ok
            print(
                f"  {backend}: {item.name} at {size:,} entries: p50 {item.percentile(0.5):.3f} ms, "
                f"p99 {item.percentile(0.99):.3f} ms (target p99 < {TARGET_MS:g} ms: "
                f"{'MET' if ok else 'NOT MET'})"
            )
        return met
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=2000, help="of each kind")
    parser.add_argument("--batch", type=int, default=100_000, help="entries per integration")
    parser.add_argument("--backends", default="sqlite", help="sqlite, postgresql or both")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--postgres", default=POSTGRES_ADMIN, help="an admin URL to create the run's database"
    )
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"sqlite", "postgresql"}:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.entries < 2 or args.proofs < 1 or args.batch < 1:
        parser.error("need at least 2 entries, 1 proof and a batch of 1")
    # SIGTERM unwinds like Ctrl-C, so that databases are dropped and folders removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print(
        f"log of {args.entries:,} synthetic leaves (canonical JSON "
        f"{leaf(0).decode()}, {len(leaf(args.entries - 1))} bytes at most), "
        f"{args.proofs:,} random proofs of each kind against the full tree"
    )
    met = True
    for backend in backends:
        print(f"{backend}:")
        with (
            tempfile.TemporaryDirectory(prefix="sqm_bench_") as folder,
            contextlib.ExitStack() as stack,
        ):
            if backend == "postgresql":
                url = stack.enter_context(postgres_database(args.postgres))
            else:
                url = f"sqlite:///{Path(folder) / 'registry.sqlite3'}"
            met = measure(backend, url, Path(folder), args) and met
    print(f"target (proofs < {TARGET_MS:g} ms at p99): {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
