"""``sqm schema``: regenerate the standard's artifacts and convert feeds between forms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sqm.schema import SchemaError, tabular


@click.group("schema")
def schema_group() -> None:
    """The standard's artifacts: generate them, check them, convert feeds."""


@schema_group.command("generate")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any artifact is stale.")
def generate_command(check: bool) -> None:
    """Regenerate JSON Schema, JSON-LD context, OWL, SHACL, Python models, CSV template and docs."""
    try:
        from sqm.schema import generate
    except ImportError as exc:  # pragma: no cover - depends on the install extras
        raise SchemaError(
            f"the generators are not installed ({exc.name}): pip install 'sqm[generate]'"
        ) from exc
    try:
        outputs = generate.render()
    except Exception as exc:  # LinkML's generators raise bare ValueError and friends
        raise SchemaError(f"generation failed: {type(exc).__name__}: {exc}") from exc
    if check:
        stale = generate.stale_files(outputs)
        if stale:
            click.echo("stale generated files (run `sqm schema generate`):", err=True)
            for path in stale:
                click.echo(f"  {path}", err=True)
            sys.exit(1)
        click.echo(f"all {len(outputs)} generated files are up to date")
        return
    written = generate.write(outputs)
    click.echo(f"wrote {len(written)} files")


@schema_group.command("to-csv")
@click.argument("feed", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def to_csv_command(feed: Path, folder: Path) -> None:
    """Write a JSON or YAML FEED as a CSV feed FOLDER in the small-supplier template."""
    document = _load(feed)
    files = tabular.write_csv_feed(document)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    click.echo(f"wrote {len(files)} CSV files to {folder}")


@schema_group.command("from-csv")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def from_csv_command(folder: Path) -> None:
    """Print a CSV feed FOLDER as a JSON feed."""
    click.echo(json.dumps(tabular.read_csv_feed(folder), indent=2, ensure_ascii=False))


def _load(path: Path) -> dict[str, object]:
    from sqm.validator.loaders import load_path

    loaded = load_path(path)
    if not loaded.ok:
        first = loaded.findings[0]
        where = f" (line {first.line})" if first.line else ""
        raise SchemaError(f"{path}: cannot be read as a feed{where}: {first.message}")
    document: dict[str, object] = loaded.document
    return document


@schema_group.command("to-rdf")
@click.argument("feed", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "rdf_format",
    type=click.Choice(["turtle", "json-ld"]),
    default="turtle",
    show_default=True,
)
def to_rdf_command(feed: Path, rdf_format: str) -> None:
    """Print a JSON or YAML FEED as RDF, expanded through the standard's JSON-LD context."""
    from sqm.schema import rdf

    document = _load(feed)
    if rdf_format == "json-ld":
        click.echo(json.dumps(rdf.typed_jsonld(document), indent=2, ensure_ascii=False))
    else:
        click.echo(rdf.to_graph(document).serialize(format="turtle"), nl=False)
