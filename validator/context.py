"""What the layers know about the feed being checked, kept small enough for streaming."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    """The parts of a declared characteristic that capability checks need."""

    product: str | None
    unit: str | None
    lower: float | None
    upper: float | None
    special_class: str | None


@dataclass
class FeedContext:
    """Options of the run and the compact facts gathered from the feed so far."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    profiles: tuple[str, ...] = ()
    header: dict[str, Any] = field(default_factory=dict)
    characteristics: dict[str, CharacteristicSpec] = field(default_factory=dict)
    baseline: Any = None  # a plausibility.Baseline when --baseline is given

    @property
    def automotive(self) -> bool:
        return "automotive" in self.profiles


def number(value: Any) -> float | None:
    """A JSON number as float, or None for anything else (booleans included)."""
    # Exact type tests: bool is an int subclass, and this runs millions of times.
    kind = type(value)
    if kind is float:
        return float(value)
    if kind is int:
        try:
            return float(value)
        except OverflowError:  # loaders refuse such integers; parsed data may still carry one
            return None
    return None


def integer(value: Any) -> int | None:
    """A JSON integer, or None."""
    return value if type(value) is int else None


def timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp with offset as an aware datetime, or None if it is not one."""
    return _timestamp(value) if isinstance(value, str) else None


@lru_cache(maxsize=8192)
def _timestamp(value: str) -> datetime | None:
    # Feeds repeat the same few instants (period bounds, as-of times) thousands of times.
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def day(value: Any) -> date | None:
    """A YYYY-MM-DD date, or None."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
