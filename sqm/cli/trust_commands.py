"""``sqm keys`` and ``sqm verify``: supplier keys and offline verification of bundles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sqm.client.registry import RegistryClient
from sqm.trust import TrustError, bundle
from sqm.trust.canonical import json_error, unique_members
from sqm.validator import Severity, validate


@click.group("keys")
def keys_group() -> None:
    """Supplier signing keys (Ed25519)."""


@keys_group.command("generate")
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=Path))
def generate_command(private_key: Path) -> None:
    """Write a new Ed25519 key to PRIVATE_KEY (PKCS#8 PEM, mode 0600) and PRIVATE_KEY.pub."""
    if private_key.exists():
        raise TrustError(f"{private_key} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_key.touch(mode=0o600)
    private_key.write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    Path(f"{private_key}.pub").write_bytes(public)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    click.echo(f"key id {bundle.key_id(raw)}")


def _load_json(path: Path, what: str) -> Any:
    try:
        # A member named twice could show this reader one value and another reader the other.
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique_members)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = json_error(exc) if isinstance(exc, ValueError) else str(exc)
        raise TrustError(f"{path}: cannot be read as a {what}: {reason}") from exc
    except RecursionError:
        raise TrustError(
            f"{path}: cannot be read as a {what}: it nests arrays or objects too deeply"
        ) from None


@click.command("verify")
@click.argument(
    "bundle_path", metavar="BUNDLE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--trust-root",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The registry's trust root (log key and TSA CA).",
)
@click.option(
    "--registry",
    metavar="URL",
    help="Also check the bundle online against this registry's log now: the current tree "
    "extends the bundle's checkpoint, still holds the entry, and holds no revocation of the "
    "key from before the attestation was logged.",
)
def verify_command(bundle_path: Path, trust_root: Path, registry: str | None) -> None:
    """Verify an attestation's bundle offline: checkpoint signature, timestamp, key
    registration, envelope signature, leaf binding, inclusion, statement and the feed's
    validity (an endorsement's bundle: its claim, the endorsed attestation's entry and the
    endorser's key instead); with --registry, also against the registry's current log.

    Exit status 0 when every step passes, 1 when one fails, 2 for unreadable input or a
    registry that cannot be asked.
    """
    made = bundle.Bundle.from_json(_load_json(bundle_path, "bundle"))
    root = bundle.TrustRoot.from_json(_load_json(trust_root, "trust root"))
    online = None
    if registry is not None:
        # Asked first: a registry that cannot be asked ends the command before any verdict.
        online = RegistryClient(registry, trust_root=root).recheck(made)
    report = bundle.verify(made, root)
    if report.feed is not None:
        # Time rules are judged as of the trusted timestamp: a bundle stays valid as it ages.
        result = validate(report.feed, now=report.timestamp)
        errors = [f for f in result.findings if f.severity is Severity.ERROR]
        detail = (
            "valid"
            if not errors
            else f"{len(errors)} errors, first: {errors[0].code} {errors[0].message}"
        )
        report.steps.append(bundle.Step("feed valid", not errors, detail))
    if online is not None:
        report.steps.extend(online.steps)
    for step in report.steps:
        mark = click.style("PASS", fg="green") if step.ok else click.style("FAIL", fg="red")
        click.echo(f"{mark}  {step.name}: {step.detail}", color=sys.stdout.isatty())
    checked = "" if online is None else ", offline and against the registry's log now"
    click.echo(f"bundle verified{checked}" if report.ok else "bundle NOT verified")
    sys.exit(0 if report.ok else 1)
