"""The registry's keys: created once, atomically, however many workers start at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sqm.registry.errors import RegistryError
from sqm.registry.secrets import load_or_create


def _log_public_key(folder: str) -> bytes:
    keys = load_or_create(Path(folder), "race.example/log")
    return keys.log_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_workers_starting_together_share_one_set_of_keys(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(6) as pool:
        keys = pool.map(_log_public_key, [str(tmp_path / "keys")] * 12)
    assert len(set(keys)) == 1
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        ".lock",
        "log.key",
        "tsa-ca.crt",
        "tsa.crt",
        "tsa.key",
    ]
    assert (tmp_path / "keys" / "log.key").stat().st_mode & 0o777 == 0o600


def test_a_restart_loads_the_same_keys(tmp_path: Path) -> None:
    assert _log_public_key(str(tmp_path)) == _log_public_key(str(tmp_path))


def test_a_partial_key_folder_is_refused_not_overwritten(tmp_path: Path) -> None:
    _log_public_key(str(tmp_path))
    (tmp_path / "tsa.key").unlink()
    before = (tmp_path / "log.key").read_bytes()
    with pytest.raises(RegistryError, match=r"key files missing: tsa\.key"):
        load_or_create(tmp_path, "race.example/log")
    assert (tmp_path / "log.key").read_bytes() == before
