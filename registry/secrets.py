"""The registry's own keys: the log's Ed25519 signing key and its TSA (CA and signing key).

Created on first start in the data folder (files mode 0600) and loaded afterwards, so that a
restarted registry keeps signing as the same log.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sqm.registry.errors import RegistryError
from sqm.trust import timestamp


@dataclass(frozen=True)
class RegistryKeys:
    log_key: Ed25519PrivateKey
    authority: timestamp.Authority


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())  # a restarted registry must find the same keys


def _create(folder: Path, files: dict[str, Path], name: str) -> None:
    authority, _ca_key = timestamp.create_authority(name, datetime.now(UTC))
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        made = {n: Path(scratch) / n for n in files}
        _write(made["log.key"], _pem(Ed25519PrivateKey.generate()), 0o600)
        _write(made["tsa.key"], _pem(authority.key), 0o600)
        _write(made["tsa.crt"], authority.certificate.public_bytes(serialization.Encoding.PEM))
        _write(made["tsa-ca.crt"], authority.ca_pem())
        for n, path in made.items():
            path.replace(files[n])


def _pem(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_or_create(folder: Path, name: str) -> RegistryKeys:
    """The registry's keys from ``folder``, created there on first use.

    Several workers may start at once: an exclusive lock on ``folder/.lock`` makes exactly one
    of them create the keys, and the files appear complete or not at all (written to a
    temporary folder, then renamed into place).
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {n: folder / n for n in ("log.key", "tsa.key", "tsa.crt", "tsa-ca.crt")}
    with (folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        present = [path.exists() for path in files.values()]
        if not any(present):
            _create(folder, files, name)
        elif not all(present):
            missing = [n for n, path in files.items() if not path.exists()]
            raise RegistryError(f"{folder}: key files missing: {', '.join(missing)}")
    try:
        log_key = serialization.load_pem_private_key(files["log.key"].read_bytes(), None)
        tsa_key = serialization.load_pem_private_key(files["tsa.key"].read_bytes(), None)
        certificate = x509.load_pem_x509_certificate(files["tsa.crt"].read_bytes())
        ca = x509.load_pem_x509_certificate(files["tsa-ca.crt"].read_bytes())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{folder}: cannot load the registry's keys: {exc}") from exc
    if not isinstance(log_key, Ed25519PrivateKey) or not isinstance(
        tsa_key, ec.EllipticCurvePrivateKey
    ):
        raise RegistryError(f"{folder}: unexpected key types")
    return RegistryKeys(log_key, timestamp.Authority(tsa_key, certificate, ca))
