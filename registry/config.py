"""Registry configuration: where data lives, the log's name, the operator token."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RegistryConfig:
    """Settings of one registry instance. ``from_env`` reads ``SQM_REGISTRY_*`` variables."""

    data_dir: Path = Path("var/registry")
    database_url: str | None = None  # default: SQLite in data_dir
    origin: str = "localhost/sqm/log/v0.1"
    operator_token: str | None = None
    max_request_bytes: int = 4 * 1024 * 1024
    issued_window_hours: float = 72.0  # a feed's issued_at must be this recent to be accepted

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'registry.sqlite3'}"

    @classmethod
    def from_env(cls) -> RegistryConfig:
        env = os.environ
        return cls(
            data_dir=Path(env.get("SQM_REGISTRY_DATA", "var/registry")),
            database_url=env.get("SQM_REGISTRY_DATABASE"),
            origin=env.get("SQM_REGISTRY_ORIGIN", "localhost/sqm/log/v0.1"),
            operator_token=env.get("SQM_REGISTRY_OPERATOR_TOKEN"),
        )
