"""What the client commands share: the registry URL, a pinned trust root, key files, and a
clean exit for the registry's refusals."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sqm.client import ClientError, RegistryClient
from sqm.trust import TrustError
from sqm.trust.bundle import TrustRoot

Command = TypeVar("Command", bound=Callable[..., Any])


def registry_options(command: Command) -> Command:
    """``--registry`` (or SQM_REGISTRY_URL) and ``--trust-root``."""
    command = click.option(
        "--trust-root",
        "trust_root_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Pin the registry's trust root (default: trust the one it serves, on first use).",
    )(command)
    return click.option(
        "--registry",
        envvar="SQM_REGISTRY_URL",
        required=True,
        help="The registry's base URL, e.g. http://127.0.0.1:8080 (env SQM_REGISTRY_URL).",
    )(command)


def make_client(registry: str, trust_root_path: Path | None) -> RegistryClient:
    root = None
    if trust_root_path is not None:
        try:
            root = TrustRoot.from_json(json.loads(trust_root_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise TrustError(f"{trust_root_path}: cannot be read as a trust root: {exc}") from exc
        except RecursionError:
            raise TrustError(
                f"{trust_root_path}: cannot be read as a trust root: it nests too deeply"
            ) from None
    client = RegistryClient(registry, root)
    if root is None:
        click.echo("note: no --trust-root given; trusting the registry's own trust root", err=True)
    return client


def load_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (as ``sqm keys generate`` writes)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TrustError(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError(f"{path}: not an Ed25519 key; make one with `sqm keys generate`")
    return key


def refused(error: ClientError) -> None:
    """Report a refusal (with the validator's findings when there are any) and exit 1."""
    click.secho(f"refused: {error}", fg="red", err=True)
    for finding in error.details.get("findings", [])[:50]:
        where = finding.get("pointer") or "/"
        click.echo(
            f"  {finding.get('code')} {finding.get('severity')} at {where}: {finding.get('message')}",
            err=True,
        )
    sys.exit(1 if error.status else 2)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
