"""Registry configuration: where data lives, the log's name, the operator token."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqm.registry.errors import RegistryError


@dataclass(frozen=True)
class RegistryConfig:
    """Settings of one registry instance. ``from_env`` reads ``SQM_REGISTRY_*`` variables."""

    data_dir: Path = Path("var/registry")
    database_url: str | None = None  # default: SQLite in data_dir
    origin: str = "localhost/sqm/log/v0.1"
    operator_token: str | None = None
    max_request_bytes: int = 4 * 1024 * 1024
    issued_window_hours: float = 72.0  # a feed's issued_at must be this recent to be accepted
    # Seconds between background sweeps that integrate entries whose request died before
    # integrating them; None: no sweep (entries wait for the next write or restart).
    integrate_every: float | None = None
    # An external RFC 3161 TSA (URL and the PEM of the CA that issued its certificate), used
    # "instead" of the registry's own TSA or "also" (in addition: the own token stays primary).
    external_tsa_url: str | None = None
    external_tsa_ca: Path | None = None
    external_tsa_mode: str = "also"
    # How many log entries the search index may trail by while it indexes on spare CPU only;
    # beyond, the indexer takes its share of the CPU from submissions (integrator.SpareCpu).
    index_trail: int = 5_000
    sparql_timeout_seconds: float = 5.0
    sparql_max_results: int = 10_000

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
            integrate_every=_seconds(env.get("SQM_REGISTRY_INTEGRATE_EVERY", "1")),
            external_tsa_url=env.get("SQM_REGISTRY_TSA_URL"),
            external_tsa_ca=Path(env["SQM_REGISTRY_TSA_CA"])
            if env.get("SQM_REGISTRY_TSA_CA")
            else None,
            external_tsa_mode=env.get("SQM_REGISTRY_TSA_MODE", "also"),
            index_trail=_entries(env.get("SQM_REGISTRY_INDEX_TRAIL", "5000")),
            max_request_bytes=int(
                _positive("SQM_REGISTRY_MAX_REQUEST_BYTES", env, cls.max_request_bytes, int, 2**30)
            ),
            issued_window_hours=_positive(
                "SQM_REGISTRY_ISSUED_WINDOW_HOURS", env, cls.issued_window_hours, float, 87_600
            ),
            sparql_timeout_seconds=_positive(
                "SQM_REGISTRY_SPARQL_TIMEOUT", env, cls.sparql_timeout_seconds, float, 3_600
            ),
            sparql_max_results=int(
                _positive(
                    "SQM_REGISTRY_SPARQL_MAX_RESULTS", env, cls.sparql_max_results, int, 10**7
                )
            ),
        )


def _positive(
    name: str,
    env: Mapping[str, str],
    default: float,
    kind: type[int] | type[float],
    most: float,
) -> float:
    """The number above 0 and at most ``most`` that the variable ``name`` holds (a whole one
    when ``kind`` is int), or ``default`` when it is unset or empty. Why a most: beyond it a
    value breaks what it feeds (a window of 10^8 hours reaches before year 1, a timeout
    beyond the platform's longest wait), so it is refused at start, not on every request."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    what = "a whole number" if kind is int else "a number"
    refusal = f"{name} must be {what} above 0 and at most {most:g}, got {raw!r}"
    try:
        value = kind(raw)
    except ValueError:
        raise RegistryError(refusal) from None
    if not (0 < value <= most and math.isfinite(value)):
        raise RegistryError(refusal)
    return value


def _entries(raw: str) -> int:
    """A number of log entries, 0 or more."""
    try:
        value = int(raw)
    except ValueError:
        raise RegistryError(
            f"SQM_REGISTRY_INDEX_TRAIL must be a whole number of log entries, got {raw!r}"
        ) from None
    if value < 0:
        raise RegistryError(f"SQM_REGISTRY_INDEX_TRAIL must be 0 or more, got {raw!r}")
    return value


def _seconds(raw: str) -> float | None:
    """A positive number of seconds, or None for "0"/"off"."""
    if raw.strip().lower() in ("0", "off", "none"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise RegistryError(
            f"SQM_REGISTRY_INTEGRATE_EVERY must be seconds or 'off', got {raw!r}"
        ) from None
    if not value > 0:
        raise RegistryError(f"SQM_REGISTRY_INTEGRATE_EVERY must be positive, got {raw!r}")
    return value
