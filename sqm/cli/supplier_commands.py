"""``sqm supplier``: register an identity and its keys at a registry, rotate and revoke keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from sqm.cli.registry_options import load_key, make_client, print_json, refused, registry_options
from sqm.client import ClientError, RegistryClient
from sqm.trust import TrustError
from sqm.validator.loaders import load_path

KEY = click.Path(exists=True, dir_okay=False, path_type=Path)


def _organization(path: Path) -> dict[str, Any]:
    """The organisation in a feed's header, or an organisation document on its own."""
    loaded = load_path(path)
    if not loaded.ok:
        first = loaded.findings[0]
        raise TrustError(f"{path}: {first.message}")
    document = loaded.document
    if isinstance(document, dict) and isinstance(document.get("header"), dict):
        document = document["header"].get("supplier")
    if not isinstance(document, dict) or not isinstance(document.get("name"), str):
        raise TrustError(
            f"{path}: expected a feed (header.supplier) or an organisation with a name and identifiers"
        )
    return document


@click.group("supplier")
def supplier_group() -> None:
    """Supplier (and endorser) identities and keys at a registry."""


@supplier_group.command("register")
@click.argument("identity", type=KEY, metavar="FEED_OR_ORGANISATION")
@click.option("--key", "key_path", type=KEY, required=True, help="The identity's first key (PEM).")
@click.option(
    "--endorser",
    is_flag=True,
    help="Register a certification body or auditor that endorses attestations.",
)
@registry_options
def register_command(
    identity: Path, key_path: Path, endorser: bool, registry: str, trust_root_path: Path | None
) -> None:
    """Register the organisation named in FEED_OR_ORGANISATION with an Ed25519 key.

    The key proves possession by signing the registration. New identities start as
    unverified until the registry's operator verifies them.
    """
    organization = _organization(identity)
    client = make_client(registry, trust_root_path)
    try:
        answer = client.register(organization, load_key(key_path), endorser=endorser)
    except ClientError as error:
        refused(error)
    click.echo(
        f"registered {answer['supplier']} ({answer['verification']}) with key {answer['keyId']} "
        f"as log entry {answer['logIndex']}"
    )


@supplier_group.command("rotate-key")
@click.argument("supplier")
@click.option("--key", "key_path", type=KEY, required=True, help="A current key (PEM).")
@click.option("--new-key", "new_key_path", type=KEY, required=True, help="The key to add (PEM).")
@registry_options
def rotate_command(
    supplier: str, key_path: Path, new_key_path: Path, registry: str, trust_root_path: Path | None
) -> None:
    """Add a key to SUPPLIER (scheme:code), authorised by one of its current keys."""
    client = make_client(registry, trust_root_path)
    try:
        answer = client.add_key(supplier, load_key(key_path), load_key(new_key_path))
    except ClientError as error:
        refused(error)
    click.echo(
        f"added key {answer['keyId']} to {answer['supplier']} "
        f"(authorised by {answer['authorizedBy']}) as log entry {answer['logIndex']}"
    )


@supplier_group.command("revoke-key")
@click.argument("supplier")
@click.option("--key", "key_path", type=KEY, required=True, help="The key to revoke (PEM).")
@click.option(
    "--at",
    "revoked_at",
    default=None,
    help="Effective time (RFC 3339 with offset; default: now). Attestations signed later fail.",
)
@registry_options
def revoke_command(
    supplier: str,
    key_path: Path,
    revoked_at: str | None,
    registry: str,
    trust_root_path: Path | None,
) -> None:
    """Revoke one of SUPPLIER's keys from an effective time on, signed by the key itself."""
    # Now to the microsecond: a key rotated in a moment before is not one the revoked key
    # authorised after its revocation (those are revoked with it).
    when = revoked_at or datetime.now(UTC).isoformat()
    try:
        parsed = datetime.fromisoformat(when)
    except ValueError:
        raise click.BadParameter(f"{when!r} is not an RFC 3339 time", param_hint="--at") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a time zone offset, e.g. +00:00", param_hint="--at")
    client = make_client(registry, trust_root_path)
    try:
        answer = client.revoke(supplier, load_key(key_path), when)
    except ClientError as error:
        refused(error)
    click.echo(
        f"revoked key {answer['keyId']} from {answer['revokedAt']} as log entry {answer['logIndex']}"
    )
    for cascaded in answer.get("alsoRevoked", []):
        click.echo(
            f"also revoked key {cascaded['keyId']} from {cascaded['revokedAt']}: the revoked key "
            "authorised it after its revocation took effect"
        )


@click.command("trust-root")
@click.option(
    "--registry", envvar="SQM_REGISTRY_URL", required=True, help="The registry's base URL."
)
def trust_root_command(registry: str) -> None:
    """Print the trust root the registry serves (save it, check it out of band, then pin it
    with --trust-root)."""
    client = RegistryClient(registry)
    try:
        print_json(client.fetch_trust_root())
    except ClientError as error:
        refused(error)
