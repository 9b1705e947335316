"""``sqm registry``: operator tools that work on the registry's storage directly."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group("registry")
def registry_group() -> None:
    """Operate a registry's storage."""


@registry_group.command("fsck")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The registry's data folder  [default: $SQM_REGISTRY_DATA, else var/registry]",
)
@click.option("--database", default=None, help="A database URL (default: SQLite in --data).")
def fsck_command(data_dir: Path | None, database: str | None) -> None:
    """Recompute the log from its stored entries and check every subtree hash and checkpoint,
    then check the registry's key, attestation and endorsement tables against the entries
    that record them.

    Exit status 0 when the log is intact, 1 when a row was changed, dropped or reordered, 2
    when there is no store to check or its database cannot be read.
    """
    import dataclasses

    from sqlalchemy.exc import SQLAlchemyError

    from sqm.registry.app import open_log
    from sqm.registry.config import RegistryConfig
    from sqm.registry.errors import RegistryError
    from sqm.registry.records import check_records
    from sqm.registry.secrets import load_or_create

    # Origin and TSAs as the registry runs them (SQM_REGISTRY_* variables).
    config = dataclasses.replace(
        RegistryConfig.from_env(),
        data_dir=data_dir or RegistryConfig.from_env().data_dir,
        database_url=database or RegistryConfig.from_env().database_url,
    )
    if not (config.data_dir / "keys" / "log.key").exists():
        raise RegistryError(f"{config.data_dir} holds no registry keys: is --data right?")
    if config.database_url is None and not (config.data_dir / "registry.sqlite3").exists():
        # make_engine would create an empty one, which fsck would then call intact.
        raise RegistryError(f"{config.data_dir} holds no registry.sqlite3: is --data right?")
    keys = load_or_create(config.data_dir / "keys", config.origin)
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
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The registry's data folder  [default: $SQM_REGISTRY_DATA, else var/registry]",
)
@click.option("--database", default=None, help="A database URL (default: SQLite in --data).")
@click.option("--check", "check_only", is_flag=True, help="Only compare the index with the log.")
def reindex_command(data_dir: Path | None, database: str | None, check_only: bool) -> None:
    """Rebuild the search index from the log, then check it against the log.

    The log is authoritative; the index is derived from it and can be rebuilt at any time.
    Exit status 0 when the index matches the log, 1 when it does not.
    """
    import dataclasses

    from sqm.registry.config import RegistryConfig
    from sqm.registry.db import make_engine
    from sqm.registry.indexer import Indexer

    config = dataclasses.replace(
        RegistryConfig.from_env(),
        data_dir=data_dir or RegistryConfig.from_env().data_dir,
        database_url=database or RegistryConfig.from_env().database_url,
    )
    indexer = Indexer(make_engine(config.url))
    if not check_only:
        applied = indexer.rebuild()
        click.echo(f"rebuilt the index from {applied} log entries")
    problems = indexer.check()
    for problem in problems:
        click.echo(f"PROBLEM  {problem}")
    click.echo(
        f"index checked against the log through entry {indexer.position()}: "
        + ("consistent" if not problems else f"{len(problems)} problems")
    )
    sys.exit(1 if problems else 0)


@registry_group.command("retire-tsa")
@click.argument("fingerprint")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The registry's data folder  [default: $SQM_REGISTRY_DATA, else var/registry]",
)
@click.option("--database", default=None, help="A database URL (default: SQLite in --data).")
def retire_tsa_command(fingerprint: str, data_dir: Path | None, database: str | None) -> None:
    """End the log's requirement that a further TSA stamp every checkpoint.

    FINGERPRINT is the SHA-256 (hex) of the TSA's CA certificate (DER), as the registry's
    refusal to start without it names it. Run it with the registry stopped, then start the
    registry without that TSA. Checkpoints logged so far still need its tokens (the trust
    root keeps the TSA with the last tree size it stamped); later ones do not.
    """
    import dataclasses

    from sqlalchemy.exc import SQLAlchemyError

    from sqm.registry.config import RegistryConfig
    from sqm.registry.db import make_engine
    from sqm.registry.errors import RegistryError
    from sqm.registry.log import TransparencyLog
    from sqm.registry.secrets import load_or_create

    config = dataclasses.replace(
        RegistryConfig.from_env(),
        data_dir=data_dir or RegistryConfig.from_env().data_dir,
        database_url=database or RegistryConfig.from_env().database_url,
    )
    if not (config.data_dir / "keys" / "log.key").exists():
        raise RegistryError(f"{config.data_dir} holds no registry keys: is --data right?")
    if config.database_url is None and not (config.data_dir / "registry.sqlite3").exists():
        # make_engine would create an empty one, and this would find nothing to retire in it.
        raise RegistryError(f"{config.data_dir} holds no registry.sqlite3: is --data right?")
    # As the registry names it, or as `openssl x509 -fingerprint -sha256` prints it.
    fingerprint = fingerprint.strip().lower().removeprefix("sha256 fingerprint=").replace(":", "")
    if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
        raise RegistryError(
            "FINGERPRINT must be the SHA-256 of the TSA's CA certificate: 64 hex digits, as the "
            "registry's refusal to start names it"
        )
    keys = load_or_create(config.data_dir / "keys", config.origin)
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
