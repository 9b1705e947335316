"""Human-readable report: findings grouped by file and record, colour only on a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import TextIO

import click

from sqm.validator.api import ValidationResult
from sqm.validator.findings import Finding, Severity

_COLOURS = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _group(finding: Finding) -> str:
    parts = finding.pointer.split("/")
    if finding.record is not None and len(parts) >= 3:
        return f"/{parts[1]}/{parts[2]}"
    return "feed" if not finding.pointer else f"/{parts[1]}"


def _location(finding: Finding, source: str) -> str:
    where = finding.pointer or "/"
    if finding.line is not None:
        where = (
            f"line {finding.line}"
            + (f", column {finding.column}" if finding.column else "")
            + (f" ({finding.pointer})" if finding.pointer else "")
        )
    if finding.source and finding.source != source:
        where = f"{finding.source}: {where}"  # a file inside a CSV feed folder
    return where


def write_text(results: Sequence[ValidationResult], out: TextIO, colour: bool) -> None:
    """Write the findings of each result, grouped by record, and a summary line."""

    def style(text: str, **kwargs: object) -> str:
        return click.style(text, **kwargs) if colour else text  # type: ignore[arg-type]

    totals = {s.value: 0 for s in Severity}
    for result in results:
        counts = result.counts()
        for key, value in counts.items():
            totals[key] += value
        verdict = (
            style("valid", fg="green", bold=True)
            if result.is_valid
            else style("invalid", fg="red", bold=True)
        )
        out.write(f"{style(result.source, bold=True)}: {verdict}")
        out.write(
            f" ({counts['error']} errors, {counts['warning']} warnings, {counts['info']} infos)\n"
        )
        ordered = sorted(result.findings, key=lambda f: (_group(f), f.pointer, f.code))
        for group, findings in groupby(ordered, key=_group):
            out.write(f"  {style(group, bold=True)}\n")
            for finding in findings:
                label = style(f"{finding.severity.value:<7}", fg=_COLOURS[finding.severity])
                out.write(f"    {label} {finding.code}  {_location(finding, result.source)}\n")
                out.write(f"            {finding.message}\n")
                if finding.hint:
                    out.write(f"            {style('fix:', dim=True)} {finding.hint}\n")
        hidden = sum(result.omitted.values())
        if hidden:
            out.write(f"  ... {hidden} more findings not shown (--max-findings)\n")
    if len(results) > 1:
        out.write(
            f"{len(results)} inputs: {totals['error']} errors, {totals['warning']} warnings, "
            f"{totals['info']} infos\n"
        )
