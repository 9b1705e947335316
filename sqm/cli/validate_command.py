"""``sqm validate``: check feeds before publishing them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sqm.validator import Severity, ValidationResult, validate
from sqm.validator.api import iter_document_findings
from sqm.validator.errors import ValidatorError
from sqm.validator.loaders import decode, expand_inputs, parse_json_text, parse_yaml_text
from sqm.validator.reporters import REPORTERS, get_reporter

EXIT_VALID, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _stdin_result(profiles: tuple[str, ...]) -> ValidationResult:
    data = sys.stdin.buffer.read()
    text = decode(data, "<stdin>")
    if not isinstance(text, str):
        return ValidationResult("<stdin>", text.findings)
    loaded = (
        parse_json_text(text, "<stdin>")
        if text.lstrip().startswith(("{", "["))
        else parse_yaml_text(text, "<stdin>")
    )
    if not loaded.ok:
        return ValidationResult("<stdin>", loaded.findings)
    return ValidationResult("<stdin>", list(iter_document_findings(loaded.document, profiles)))


def _limit(result: ValidationResult, max_findings: int | None) -> ValidationResult:
    if max_findings is not None:
        result.findings = result.findings[:max_findings]
    return result


@click.command("validate")
@click.argument("inputs", nargs=-1, required=True, metavar="PATH... | -")
@click.option(
    "--profile", "profiles", multiple=True, help="Check against this profile too (repeatable)."
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
    help="The lowest severity that makes the exit code 1.",
)
def validate_command(
    inputs: tuple[str, ...],
    profiles: tuple[str, ...],
    output_format: str,
    max_findings: int | None,
    fail_on: str,
) -> None:
    """Validate SQM feeds (JSON, YAML, or a CSV feed folder); `-` reads standard input.

    Exit status: 0 valid, 1 findings at or above --fail-on, 2 usage or I/O error.
    """
    results: list[ValidationResult] = []
    try:
        for item in inputs:
            if item == "-":
                result = _stdin_result(profiles)
                results.append(_limit(result, max_findings))
                continue
            path = Path(item)
            if not path.exists():
                raise ValidatorError(f"{item}: no such file or folder")
            for feed in expand_inputs(path):
                results.append(_limit(validate(feed, profiles), max_findings))
    except ValidatorError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_USAGE)
    reporter = get_reporter(output_format)
    stream = sys.stdout
    reporter(results, stream, output_format == "text" and stream.isatty())
    threshold = Severity(fail_on).rank
    failed = any(f.severity.rank >= threshold for r in results for f in r.findings)
    sys.exit(EXIT_FINDINGS if failed else EXIT_VALID)
