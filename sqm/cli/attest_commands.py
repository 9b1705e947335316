"""``sqm attest`` and ``sqm endorse``: sign, submit, and keep the verified bundle."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from sqm.cli.registry_options import load_key, make_client, refused, registry_options
from sqm.client import ClientError
from sqm.trust import TrustError
from sqm.trust.bundle import ENDORSEMENT_LEVELS
from sqm.validator import Severity, validate
from sqm.validator.loaders import is_csv_feed, load_path
from sqm.validator.reporters import get_reporter

KEY = click.Path(exists=True, dir_okay=False, path_type=Path)


def _feed_document(path: Path) -> dict[str, Any]:
    """The whole feed as one document: JSON, YAML, or a folder in the CSV template."""
    if path.is_dir():
        if not is_csv_feed(path):
            raise TrustError(f"{path}: a folder must hold a feed in the CSV template")
        from sqm.schema.tabular import read_csv_feed

        return read_csv_feed(path)
    loaded = load_path(path)
    if not loaded.ok or not isinstance(loaded.document, dict):
        raise TrustError(f"{path}: not a feed document; run `sqm validate {path}` for details")
    return loaded.document


@click.command("attest")
@click.argument("feed_path", metavar="FEED", type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_path", type=KEY, required=True, help="The supplier's key (PEM).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="Where to save the verified bundle.",
)
@registry_options
def attest_command(
    feed_path: Path, key_path: Path, out: Path, registry: str, trust_root_path: Path | None
) -> None:
    """Validate FEED locally, sign it, submit it, verify the bundle and save it to --out.

    Nothing is submitted when the feed has errors. An exact resubmission of a logged feed
    saves the existing entry's bundle. Exit 0 when the bundle is saved, 1 when the feed or the
    submission is refused, 2 for unreadable input or an unreachable registry.
    """
    key = load_key(key_path)
    result = validate(feed_path)  # from the file, so findings carry lines and columns
    if any(f.severity is Severity.ERROR for f in result.findings):
        get_reporter("text")([result], sys.stderr, sys.stderr.isatty())
        click.secho("not submitted: the feed has errors", fg="red", err=True)
        sys.exit(1)
    feed = _feed_document(feed_path)
    client = make_client(registry, trust_root_path)
    try:
        submission = client.attest(feed, key)
    except ClientError as error:
        refused(error)
    out.write_text(json.dumps(submission.bundle.to_json(), indent=2) + "\n", encoding="utf-8")
    state = "logged" if submission.new else "already logged"
    click.echo(
        f"{state} as entry {submission.log_index}; bundle verified "
        f"({len(submission.report.steps)} checks) and saved to {out}"
    )


@click.command("endorse")
@click.argument("index", type=click.IntRange(min=0), metavar="LOG_INDEX")
@click.option("--endorser", required=True, help="Your registered identity (scheme:code).")
@click.option("--key", "key_path", type=KEY, required=True, help="Your endorser key (PEM).")
@click.option(
    "--assurance",
    type=click.Choice(ENDORSEMENT_LEVELS),
    required=True,
    help="The assurance your review gives the claim.",
)
@click.option("--scope", default=None, help="What was reviewed, e.g. 'capability audited on site'.")
@registry_options
def endorse_command(
    index: int,
    endorser: str,
    key_path: Path,
    assurance: str,
    scope: str | None,
    registry: str,
    trust_root_path: Path | None,
) -> None:
    """Endorse the attestation at LOG_INDEX: its bundle is fetched and verified first, and the
    endorsement names the digest of exactly what was verified."""
    client = make_client(registry, trust_root_path)
    try:
        answer = client.endorse(endorser, index, assurance, load_key(key_path), scope)
    except ClientError as error:
        refused(error)
    click.echo(f"{endorser} endorsed entry {index} ({assurance}) as log entry {answer['logIndex']}")
