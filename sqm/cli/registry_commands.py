"""``sqm registry``: operator tools that work on the registry's storage directly."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sqm.cli.registry_options import Command

if TYPE_CHECKING:
    from sqm.registry.config import RegistryConfig
    from sqm.registry.secrets import RegistryKeys


@click.group("registry")
def registry_group() -> None:
    """Operate a registry's storage."""


def _store_options(command: Command) -> Command:
    """``--data`` and ``--database``: which registry's store a command works on."""
    command = click.option(
        "--database", default=None, help="A database URL (default: SQLite in --data)."
    )(command)
    return click.option(
        "--data",
        "data_dir",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        help="The registry's data folder  [default: $SQM_REGISTRY_DATA, else var/registry]",
    )(command)


def _config(data_dir: Path | None, database: str | None) -> RegistryConfig:
    """The registry's settings as it runs (``SQM_REGISTRY_*``), with the store named here."""
    from sqm.registry.config import RegistryConfig

    config = RegistryConfig.from_env()
    return dataclasses.replace(
        config,
        data_dir=data_dir or config.data_dir,
        database_url=database or config.database_url,
    )


def _existing_store(
    data_dir: Path | None, database: str | None
) -> tuple[RegistryConfig, RegistryKeys]:
    """The settings and keys of a registry whose store exists; RegistryError otherwise."""
    from sqm.registry.errors import RegistryError
    from sqm.registry.secrets import load_or_create

    config = _config(data_dir, database)
    if not (config.data_dir / "keys" / "log.key").exists():
        raise RegistryError(f"{config.data_dir} holds no registry keys: is --data right?")
    _existing_database(config)
    return config, load_or_create(config.data_dir / "keys", config.origin)


def _existing_database(config: RegistryConfig) -> None:
    """RegistryError unless the store's database exists and holds a registry: make_engine
    would create the tables in an empty one, which a check would call intact and a change
    would find nothing in."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import SQLAlchemyError

    from sqm.registry.db import log_entries
    from sqm.registry.errors import RegistryError

    if config.database_url is None:
        if not (config.data_dir / "registry.sqlite3").exists():
            raise RegistryError(f"{config.data_dir} holds no registry.sqlite3: is --data right?")
        return
    try:
        engine = create_engine(config.database_url)
        try:
            with engine.connect() as connection:
                held = inspect(connection).has_table(log_entries.name)
        finally:
            engine.dispose()
    except (SQLAlchemyError, ValueError) as exc:  # no such database, a URL it cannot use
        raise RegistryError(f"cannot read the registry's database: {exc}") from None
    if not held:
        shown = config.database_url.rsplit("@", 1)[-1]  # no user or password in the message
        raise RegistryError(
            f"the database {shown} holds no registry (no {log_entries.name} table): is "
            "--database right?"
        )


@registry_group.command("fsck")
@_store_options
def fsck_command(data_dir: Path | None, database: str | None) -> None:
    """Recompute the log from its stored entries and check every subtree hash and checkpoint,
    then check the registry's key, attestation and endorsement tables against the entries
    that record them.

    Exit status 0 when the log is intact, 1 when a row was changed, dropped or reordered, 2
    when there is no store to check or its database cannot be read.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from sqm.registry.app import open_log
    from sqm.registry.errors import RegistryError
    from sqm.registry.records import check_records

    # Origin and TSAs as the registry runs them (SQM_REGISTRY_* variables).
    config, keys = _existing_store(data_dir, database)
    try:
        log = open_log(config, keys)
        problems = log.fsck() + check_records(log.engine)
    except SQLAlchemyError as exc:  # no such database, not a database, a URL it cannot use
        raise RegistryError(f"cannot read the registry's database: {exc}") from None
    for problem in problems:
        click.echo(f"PROBLEM  {problem}")
    click.echo(
        f"{log.size()} entries checked: "
        + ("intact" if not problems else f"{len(problems)} problems")
    )
    waiting = log.waiting()
    if waiting:
        # Not damage: stored but not yet in the tree; a running registry integrates them.
        click.echo(f"{waiting} entries sequenced and not yet integrated (start the registry)")
    sys.exit(1 if problems else 0)


@registry_group.command("reindex")
@_store_options
@click.option("--check", "check_only", is_flag=True, help="Only compare the index with the log.")
def reindex_command(data_dir: Path | None, database: str | None, check_only: bool) -> None:
    """Rebuild the search index from the log, then check it against the log.

    The log is authoritative; the index is derived from it and can be rebuilt at any time.
    Exit status 0 when the index matches the log, 1 when it does not.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from sqm.registry.db import make_engine
    from sqm.registry.errors import RegistryError
    from sqm.registry.indexer import Indexer

    config = _config(data_dir, database)
    _existing_database(config)
    try:
        indexer = Indexer(make_engine(config.url))
        if not check_only:
            applied = indexer.rebuild()
            click.echo(f"rebuilt the index from {applied} log entries")
        problems = indexer.check()
    except SQLAlchemyError as exc:
        raise RegistryError(f"cannot read the registry's database: {exc}") from None
    for problem in problems:
        click.echo(f"PROBLEM  {problem}")
    click.echo(
        f"index checked against the log through entry {indexer.position()}: "
        + ("consistent" if not problems else f"{len(problems)} problems")
    )
    sys.exit(1 if problems else 0)


@registry_group.command("retire-tsa")
@click.argument("fingerprint")
@_store_options
def retire_tsa_command(fingerprint: str, data_dir: Path | None, database: str | None) -> None:
    """End the log's requirement that a further TSA stamp every checkpoint.

    FINGERPRINT is the SHA-256 (hex) of the TSA's CA certificate (DER), as the registry's
    refusal to start without it names it. Run it with the registry stopped, then start the
    registry without that TSA. Checkpoints logged so far still need its tokens (the trust
    root keeps the TSA with the last tree size it stamped); later ones do not.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from sqm.registry.db import make_engine
    from sqm.registry.errors import RegistryError
    from sqm.registry.log import TransparencyLog

    config, keys = _existing_store(data_dir, database)
    # As the registry names it, or as `openssl x509 -fingerprint -sha256` prints it.
    fingerprint = fingerprint.strip().lower().removeprefix("sha256 fingerprint=").replace(":", "")
    if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
        raise RegistryError(
            "FINGERPRINT must be the SHA-256 of the TSA's CA certificate: 64 hex digits, as the "
            "registry's refusal to start names it"
        )
    try:
        # The log alone, without the configured TSAs: retiring one needs none of them.
        log = TransparencyLog(make_engine(config.url), config.origin, keys.log_key, keys.authority)
        last = log.retire_tsa(fingerprint)
    except (SQLAlchemyError, OSError, ImportError) as exc:
        raise RegistryError(f"cannot read the registry's database: {exc}") from None
    click.echo(
        f"the TSA of CA {fingerprint} is no longer required after tree size {last}; start the "
        "registry without it"
    )
