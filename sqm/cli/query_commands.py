"""``sqm query``: what a buyer asks the registry, with every answer checked against the log."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from sqm.cli.registry_options import make_client, print_json, refused, registry_options
from sqm.client import ClientError, Hit


@click.group("query")
def query_group() -> None:
    """Search the registry and read verified claims."""


def _hit_line(hit: Hit) -> str:
    matches = "; ".join(
        f"{m.metric.split('.', 1)[1]} {m.minimum:g}..{m.maximum:g}{' ' + m.unit if m.unit else ''}"
        for m in hit.matches
        if m.minimum is not None and m.maximum is not None
    )
    return (
        f"{hit.supplier:28} {hit.name[:34]:34} {hit.country or '--':2} {hit.verification:10} "
        f"entry {hit.log_index:<6} {hit.assurance:22} {matches}"
    )


@query_group.command("suppliers")
@click.option("--where", "conditions", multiple=True, help="METRIC OP NUMBER [UNIT], repeatable.")
@click.option("--country", default=None, help="ISO 3166-1 alpha-2 (the supplier or a site).")
@click.option("--certification", default=None, help="A scheme code, e.g. IATF_16949.")
@click.option("--valid-on", default=None, help="The date the certificate must be valid on.")
@click.option("--classification", default=None, help="SCHEME:CODE, * for a prefix.")
@click.option("--characteristic-class", default=None, help="critical, significant, key, standard.")
@click.option("--assurance", default=None, help="Minimum endorsed assurance level.")
@click.option("--fresh-within", default=None, help="Days, or P30D.")
@click.option("--as-of", default=None, help="The state as published by this time.")
@click.option("--match", type=click.Choice(["all", "any"]), default=None)
@click.option(
    "--sort", type=click.Choice(["supplier", "name", "issued_at", "-issued_at"]), default=None
)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--all", "every", is_flag=True, help="Follow the cursor through every page.")
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
@registry_options
def suppliers_command(
    conditions: tuple[str, ...],
    country: str | None,
    certification: str | None,
    valid_on: str | None,
    classification: str | None,
    characteristic_class: str | None,
    assurance: str | None,
    fresh_within: str | None,
    as_of: str | None,
    match: str | None,
    sort: str | None,
    limit: int,
    every: bool,
    output: str,
    registry: str,
    trust_root_path: Path | None,
) -> None:
    """Suppliers whose latest feed meets every condition, each hit's log entry proven.

    \b
    sqm query suppliers --where 'capability_records.cpk>=1.33' \\
        --where 'delivery_records.on_time_percent>=98' --certification IATF_16949
    """
    client = make_client(registry, trust_root_path)
    filters: dict[str, Any] = {
        "country": country, "certification": certification, "valid_on": valid_on,
        "classification": classification, "characteristic_class": characteristic_class,
        "assurance": assurance, "fresh_within": fresh_within, "as_of": as_of,
        "match": match, "sort": sort,
    }  # fmt: skip
    try:
        if every:
            hits = list(client.search_all(conditions, **filters))
            size = None
        else:
            page = client.search(conditions, limit=limit, **filters)
            hits = list(page.hits)
            size = page.checkpoint.size if page.checkpoint else None
    except ClientError as error:
        refused(error)
    if output == "json":
        print_json([asdict(hit) for hit in hits])
        return
    for hit in hits:
        click.echo(_hit_line(hit))
    where = f" (checkpoint of {size} entries)" if size is not None else ""
    click.echo(f"{len(hits)} suppliers; every hit's log entry verified{where}", err=True)


@query_group.command("supplier")
@click.argument("supplier")
@click.option("--as-of", default=None, help="The profile as published by this time.")
@registry_options
def supplier_command(
    supplier: str, as_of: str | None, registry: str, trust_root_path: Path | None
) -> None:
    """A supplier's profile (JSON): identity, keys, latest attestation, metrics, history."""
    client = make_client(registry, trust_root_path)
    try:
        print_json(client.supplier(supplier, as_of))
    except ClientError as error:
        refused(error)


@query_group.command("claims")
@click.argument("index", type=click.IntRange(min=0), metavar="LOG_INDEX")
@registry_options
def claims_command(index: int, registry: str, trust_root_path: Path | None) -> None:
    """The feed of the attestation at LOG_INDEX, printed only after its bundle verifies."""
    client = make_client(registry, trust_root_path)
    try:
        feed, report = client.claims(index)
    except ClientError as error:
        refused(error)
    click.echo(json.dumps(feed, indent=2, ensure_ascii=False))
    click.echo(
        f"verified: {len(report.steps)} checks passed, timestamped {report.timestamp}", err=True
    )
    sys.exit(0)
