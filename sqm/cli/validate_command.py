"""``sqm validate``: check feeds before publishing them."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from sqm.validator import (
    Severity,
    ValidationResult,
    ValidatorError,
    iter_findings,
    iter_stream_findings,
    load_baseline,
)
from sqm.validator.api import collect, iter_ndjson_findings
from sqm.validator.layers.plausibility import Baseline
from sqm.validator.loaders import NDJSON_SUFFIXES, expand_inputs
from sqm.validator.parallel import iter_parallel_ndjson
from sqm.validator.reporters import REPORTERS, get_reporter

EXIT_VALID, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
# Inputs at least this large get a progress bar (on a terminal only).
PROGRESS_BYTES = 8 * 1024 * 1024
# Below this size, starting worker processes costs more than it saves.
PARALLEL_BYTES = 16 * 1024 * 1024


def _parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an RFC 3339 timestamp", param_hint="--now"
        ) from None
    if value.tzinfo is None:
        raise click.BadParameter(
            "give a time zone offset, e.g. 2026-11-27T00:00:00Z", param_hint="--now"
        )
    return value


class _ProgressReader:
    """A binary file whose reads advance a progress bar."""

    def __init__(self, handle: IO[bytes], bar: Any) -> None:
        self._handle = handle
        self._bar = bar

    def readline(self, size: int = -1) -> bytes:
        line = self._handle.readline(size)
        self._bar.update(len(line))
        return line

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._bar.update(len(data))
        return data

    # The parallel validator's workers read their batches from the file itself.
    def fileno(self) -> int:
        return self._handle.fileno()

    def tell(self) -> int:
        return self._handle.tell()


def _with_progress(
    path: Path,
    profiles: tuple[str, ...],
    now: datetime | None,
    baseline: Baseline | None,
    limit: int | None,
    workers: int,
) -> ValidationResult:
    with (
        path.open("rb") as handle,
        click.progressbar(length=path.stat().st_size, label=path.name, file=sys.stderr) as bar,
    ):
        reader = _ProgressReader(handle, bar)
        if workers > 1:
            found = iter_parallel_ndjson(
                reader, str(path), profiles, now=now, baseline=baseline, jobs=workers
            )
        else:
            found = iter_ndjson_findings(reader, str(path), profiles, now=now, baseline=baseline)
        return collect(found, str(path), limit)


def _jobs(feed: Path, requested: int) -> int:
    if requested:
        return requested
    return (os.cpu_count() or 1) if feed.stat().st_size >= PARALLEL_BYTES else 1


@click.command("validate")
@click.argument("inputs", nargs=-1, required=True, metavar="PATH... | -")
@click.option(
    "--profile", "profiles", multiple=True, help="Also check against this profile (repeatable)."
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(sorted(REPORTERS)),
    default="text",
    show_default=True,
)
@click.option(
    "--max-findings",
    type=click.IntRange(min=1),
    default=None,
    help="Report at most this many findings per input.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning"]),
    default="error",
    show_default=True,
    help="The lowest severity that makes the exit status 1.",
)
@click.option(
    "--baseline",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="The previous feed: report implausible jumps and copied values against it.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Worker processes for NDJSON feeds; 0 picks one per core for feeds over 16 MB.",
)
@click.option(
    "--now",
    "now_text",
    default=None,
    metavar="TIMESTAMP",
    help="Judge time rules as of this RFC 3339 instant (default: now).",
)
def validate_command(
    inputs: tuple[str, ...],
    profiles: tuple[str, ...],
    output_format: str,
    max_findings: int | None,
    fail_on: str,
    baseline: Path | None,
    jobs: int,
    now_text: str | None,
) -> None:
    """Validate SQM feeds: JSON, YAML, NDJSON, JSON-LD, Turtle, or a CSV feed folder.

    `-` reads standard input (NDJSON when its first line is a header line, otherwise JSON or
    YAML). A folder is expanded to the feeds in it. Exit status: 0 valid, 1 findings at or
    above --fail-on, 2 usage or I/O error.
    """
    now = _parse_now(now_text)
    stream = sys.stdout
    interactive = sys.stderr.isatty()
    results: list[ValidationResult] = []
    try:
        previous: Baseline | None = load_baseline(baseline) if baseline else None
        for item in inputs:
            if item == "-":
                found = iter_stream_findings(
                    sys.stdin.buffer, "<stdin>", profiles, now=now, baseline=previous
                )
                results.append(collect(found, "<stdin>", max_findings))
                continue
            path = Path(item)
            if not path.exists():
                raise ValidatorError(f"{item}: no such file or folder")
            for feed in expand_inputs(path):
                streamed = feed.is_file() and feed.suffix.lower() in NDJSON_SUFFIXES
                workers = _jobs(feed, jobs) if streamed else 1
                if interactive and streamed and feed.stat().st_size >= PROGRESS_BYTES:
                    result = _with_progress(feed, profiles, now, previous, max_findings, workers)
                    results.append(result)
                    continue
                found = iter_findings(feed, profiles, now=now, baseline=previous, jobs=workers)
                results.append(collect(found, str(feed), max_findings))
    except ValidatorError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    reporter = get_reporter(output_format)
    reporter(results, stream, output_format == "text" and stream.isatty())
    threshold = Severity(fail_on).rank
    failed = any(
        Severity(severity).rank >= threshold and count
        for r in results
        for severity, count in r.counts().items()
    )
    sys.exit(EXIT_FINDINGS if failed else EXIT_VALID)
