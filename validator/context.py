"""What the layers know about the feed being checked, kept small enough for streaming."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqm.validator.compact import DigestMap


class CharacteristicSpec(NamedTuple):
    """The parts of a declared characteristic that capability checks need."""

    product: str | None
    unit: str | None
    lower: float | None
    upper: float | None
    special_class: str | None


_HAS_LOWER, _HAS_UPPER = 1, 2


class CharacteristicTable:
    """Declared characteristics' specs by id, compactly: the id's 64-bit hash to a row of
    arrays, the texts (product, unit, class) stored once each. About 50 bytes a
    characteristic instead of about 250 for a dict of spec objects.

    A mapping for what the layers ask of it: ``table[id] = spec``, ``table.get(id)``,
    ``id in table``, ``len(table)``."""

    def __init__(self) -> None:
        self._rows = DigestMap()
        self._flags = bytearray()
        self._lower = array("d")
        self._upper = array("d")
        # Texts once each (row columns hold indexes into the list), found by their hash.
        self._texts: list[str | None] = [None]
        self._text_index = DigestMap()
        self._recent: dict[str, int] = {}  # the texts used last (units, a product's several)
        self._product = array("i")
        self._unit = array("i")
        self._special = array("i")
        # The last lookup: the layers ask for the same characteristic several times a record.
        self._last: tuple[str | None, CharacteristicSpec | None] = (None, None)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, identifier: object) -> bool:
        return isinstance(identifier, str) and self._rows.get_hash(hash(identifier)) is not None

    def _text(self, value: str | None) -> int:
        if value is None:
            return 0
        index = self._recent.get(value)
        if index is not None:
            return index
        index = self._text_index.get_hash(hash(value))
        if index is None:
            index = len(self._texts)
            self._text_index.set_hash(hash(value), index)
            self._texts.append(value)
        if len(self._recent) >= 1024:
            self._recent.clear()
        self._recent[value] = index
        return index

    def __setitem__(self, identifier: str, spec: CharacteristicSpec) -> None:
        row = self._rows.get_hash(hash(identifier))
        flags = (_HAS_LOWER if spec.lower is not None else 0) | (
            _HAS_UPPER if spec.upper is not None else 0
        )
        columns = (
            flags,
            0.0 if spec.lower is None else spec.lower,
            0.0 if spec.upper is None else spec.upper,
            self._text(spec.product),
            self._text(spec.unit),
            self._text(spec.special_class),
        )
        targets = (self._flags, self._lower, self._upper, self._product, self._unit, self._special)
        if row is None:
            self._rows.set_hash(hash(identifier), len(self._flags))
            for target, value in zip(targets, columns, strict=True):
                target.append(value)  # type: ignore[attr-defined]
        else:
            for target, value in zip(targets, columns, strict=True):
                target[row] = value  # type: ignore[index]
        self._last = (None, None)

    def get(self, identifier: str) -> CharacteristicSpec | None:
        last, spec = self._last
        if identifier == last:
            return spec
        row = self._rows.get_hash(hash(identifier))
        if row is None:
            spec = None
        else:
            flags, texts = self._flags[row], self._texts
            spec = _spec(
                (
                    texts[self._product[row]],
                    texts[self._unit[row]],
                    self._lower[row] if flags & _HAS_LOWER else None,
                    self._upper[row] if flags & _HAS_UPPER else None,
                    texts[self._special[row]],
                )
            )
        self._last = (identifier, spec)
        return spec


_spec = CharacteristicSpec._make


@dataclass
class FeedContext:
    """Options of the run and the compact facts gathered from the feed so far."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    profiles: tuple[str, ...] = ()
    profiles_final: bool = False  # the header has been read: the profiles will not change
    header: dict[str, Any] = field(default_factory=dict)
    characteristics: CharacteristicTable = field(default_factory=lambda: CharacteristicTable())
    baseline: Any = None  # a plausibility.Baseline when --baseline is given
    # Verdicts of checks that depend only on a few repeated values and on ``now`` (see
    # semantics.memoized): bounded, and cleared when ``now`` changes.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    memo_now: datetime | None = field(default=None, repr=False, compare=False)

    @property
    def automotive(self) -> bool:
        return "automotive" in self.profiles


def number(value: Any) -> float | None:
    """A JSON number as float, or None for anything else (booleans included)."""
    # Exact type tests: bool is an int subclass, and this runs millions of times.
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
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
