"""``sqm serve``: run the registry for development (production: gunicorn, see the docs)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keys and the SQLite database [default: $SQM_REGISTRY_DATA, else var/registry].",
)
@click.option(
    "--database",
    default=None,
    help="A database URL [default: $SQM_REGISTRY_DATABASE, else SQLite in --data].",
)
@click.option("--seed/--no-seed", default=False, help="Log the example feeds first.")
@click.option(
    "--examples",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("examples/feeds"),
    show_default=True,
    help="The feeds --seed logs.",
)
def serve_command(
    host: str, port: int, data_dir: Path | None, database: str | None, seed: bool, examples: Path
) -> None:
    """Run the registry with Werkzeug's development server.

    \b
    The registry is configured as under gunicorn, from the environment:
      SQM_REGISTRY_DATA, SQM_REGISTRY_DATABASE, SQM_REGISTRY_ORIGIN,
      SQM_REGISTRY_OPERATOR_TOKEN, SQM_REGISTRY_INTEGRATE_EVERY (default 1),
      SQM_REGISTRY_INDEX_TRAIL, SQM_REGISTRY_TSA_URL, SQM_REGISTRY_TSA_CA,
      SQM_REGISTRY_TSA_MODE, SQM_REGISTRY_MAX_REQUEST_BYTES (default 4194304),
      SQM_REGISTRY_ISSUED_WINDOW_HOURS (default 72), SQM_REGISTRY_SPARQL_TIMEOUT
      (seconds, default 5), SQM_REGISTRY_SPARQL_MAX_RESULTS (default 10000)
      (see docs/registry.md).
    --data and --database, when given, take precedence over their variables.
    """
    import dataclasses

    from sqm.registry.app import create_app
    from sqm.registry.config import RegistryConfig
    from sqm.registry.seed import seed as seed_examples

    config = RegistryConfig.from_env()
    if data_dir is not None:
        config = dataclasses.replace(config, data_dir=data_dir)
    if database is not None:
        config = dataclasses.replace(config, database_url=database)
    if seed and not examples.is_dir():
        raise click.BadParameter(f"{examples} is not a folder of feeds", param_hint="--examples")
    app = create_app(config)
    if seed:
        for entry in seed_examples(
            app.extensions["sqm"]["ingest"], examples, config.data_dir / "seed-keys"
        ):
            state = "logged" if entry["new"] else "already logged"
            click.echo(
                f"{entry['feed']}: {state} as entry {entry['logIndex']} ({entry['supplier']})"
            )
    click.echo(f"registry on http://{host}:{port}/api/v1/trust-root (Ctrl-C stops it)")
    app.run(host=host, port=port, debug=False, use_reloader=False)
