"""What a feed claims, flattened for search: numeric facts with units converted to base units,
certifications with their validity, product classifications and site countries.

Pure: a feed in, facts out. The registry's index stores them; the log stays authoritative.

A *metric* is a numeric field of a record section, named by its path without list positions:
``capability_records.cpk``, ``delivery_records.on_time_percent``,
``lead_time_records.actual_lead_time.mean`` (in the distribution's unit),
``energy_records.energy_consumed`` (a Quantity: its value, in its unit). The catalogue of
metrics is derived from the standard's generated JSON Schema, so every numeric field of every
record section is searchable and nothing else is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from typing import Any, NamedTuple

from sqm.schema import SchemaError
from sqm.schema.artifacts import json_schema, to_base, units

# Subtrees that describe a claim rather than state one.
NOT_METRICS = frozenset(
    {"assurance", "derivation", "period", "evidence", "location", "uncertainty"}
)
# Capability fields measured in the characteristic's unit.
IN_CHARACTERISTIC_UNIT = frozenset({"process_mean", "sigma_within", "sigma_overall"})
# The quantity kinds a unit-bearing metric may be stated in: the validator's unit rules
# (validator/layers/semantics.py), which every logged feed passed. Metrics not listed take the
# unit of what they measure (a characteristic's, a lot's).
UNIT_KINDS: dict[str, tuple[str, ...]] = {
    "lead_time_records.quoted_lead_time": ("time",),
    **{
        f"lead_time_records.actual_lead_time.{field}": ("time",)
        for field in ("minimum", "mean", "median", "p95", "maximum")
    },
    "energy_records.energy_consumed": ("energy",),
    "water_records.water_consumption": ("volume", "mass"),
    "water_records.water_withdrawal": ("volume", "mass"),
    "traceability_records.lots.quantity": ("mass", "volume", "count", "length", "area"),
}
ASSURANCE_ORDER = (
    "self_declared",
    "instrumented_feed",
    "second_party",
    "third_party",
    "third_party_accredited",
)


@dataclass(frozen=True)
class Metric:
    """A searchable metric: its name, and whether its values carry units."""

    name: str
    section: str
    unit_bearing: bool
    description: str


class Fact(NamedTuple):
    """One numeric claim of one record (a tuple: a feed yields hundreds; the indexer takes
    them as plain tuples from :func:`fact_rows`, without building these)."""

    section: str
    record_id: str
    metric: str
    value: float
    unit: str | None
    base_value: float
    base_unit: str | None
    site: str | None
    product: str | None
    characteristic: str | None
    characteristic_class: str | None
    as_of: datetime | None
    claimed_assurance: str


class Certification(NamedTuple):
    record_id: str
    scheme: str
    status: str
    valid_from: date | None
    valid_until: date | None
    certificate_number: str | None
    site: str | None


@dataclass(frozen=True)
class FeedFacts:
    supplier: str
    name: str
    country: str | None
    feed_id: str
    sequence: int
    issued_at: datetime
    facts: tuple[Fact, ...]
    certifications: tuple[Certification, ...]
    classifications: tuple[tuple[str, str, str], ...]  # (product, scheme, code)
    countries: tuple[str, ...]  # the supplier's and its sites' countries


# --- the catalogue ------------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    return json_schema()


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    if "$ref" in node:
        found: Mapping[str, Any] = defs[str(node["$ref"]).rsplit("/", 1)[-1]]
        return found
    for option in node.get("anyOf", []):
        if option.get("type") != "null":
            return _resolve(option, defs)
    return node


def _kind(node: Mapping[str, Any]) -> set[str]:
    kind = node.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()


def _walk(
    node: Mapping[str, Any], path: str, defs: Mapping[str, Any], depth: int
) -> Iterator[tuple[str, bool, str]]:
    properties = node.get("properties", {})
    has_unit = "unit" in properties
    for name, raw in sorted(properties.items()):
        if name in NOT_METRICS or depth > 5:
            continue
        child = _resolve(raw, defs)
        kinds = _kind(child) | _kind(raw)
        here = f"{path}.{name}"
        description = str(raw.get("description") or child.get("description") or "")
        if kinds & {"number", "integer"}:
            yield (path if name == "value" and has_unit else here), has_unit, description
        elif "array" in kinds and isinstance(child.get("items"), Mapping):
            item = _resolve(child["items"], defs)
            if "properties" in item:
                yield from _walk(item, here, defs, depth + 1)
        elif "properties" in child:
            yield from _walk(child, here, defs, depth + 1)


@cache
def catalogue() -> dict[str, Metric]:
    """Every searchable metric of the standard, by name."""
    schema = _schema()
    defs = schema["$defs"]
    metrics: dict[str, Metric] = {}
    for section, prop in sorted(schema["properties"].items()):
        if not section.endswith("_records"):
            continue
        record = _resolve(prop["items"], defs)
        for name, unit_bearing, description in _walk(record, section, defs, 0):
            if (
                section == "capability_records"
                and name.rsplit(".", 1)[-1] in IN_CHARACTERISTIC_UNIT
            ):
                unit_bearing = True
            metrics.setdefault(name, Metric(name, section, unit_bearing, description))
    return metrics


# --- extraction ---------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _parsed_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _time(value: Any) -> datetime | None:
    # A feed's records mostly share a few as_of instants: parsed once each.
    return _parsed_time(value) if isinstance(value, str) else None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _numbers(
    record: dict[str, Any], path: str, unit: str | None, out: list[tuple[str, float, str | None]]
) -> None:
    # Runs for every field of every record the index takes in: exact types (a parsed feed
    # holds dicts and lists), no ABC checks, and appended to one list rather than yielded
    # through a generator a nesting level (each value passed up every level's frame).
    has_unit = "unit" in record
    local_unit = record["unit"] if has_unit and isinstance(record["unit"], str) else unit
    owner = local_unit if has_unit else unit
    for name, value in record.items():
        kind = type(value)
        if kind is float or kind is int:
            if name in NOT_METRICS:
                continue
            out.append(
                ((path if has_unit and name == "value" else f"{path}.{name}"), float(value), owner)
            )
        elif kind is dict:
            if name not in NOT_METRICS:
                _numbers(value, f"{path}.{name}", None, out)
        elif kind is list and name not in NOT_METRICS:
            here = f"{path}.{name}"
            for item in value:
                if type(item) is dict:
                    _numbers(item, here, None, out)


@cache
def _in_characteristic_unit() -> frozenset[str]:
    """The catalogue's metrics stated in their characteristic's unit when they name none."""
    return frozenset(
        name for name in catalogue() if name.rsplit(".", 1)[-1] in IN_CHARACTERISTIC_UNIT
    )


def extract(feed: Mapping[str, Any]) -> FeedFacts:
    """The searchable facts of a valid feed."""
    found, rows = fact_rows(feed, None, _as_is, _as_is)
    return dataclasses.replace(found, facts=tuple(Fact._make(row[2:]) for row in rows))


def _as_is(value: Any) -> Any:
    return value


def fact_rows(
    feed: Mapping[str, Any],
    key: Any,
    instant: Callable[[datetime | None], Any],
    level: Callable[[str], Any],
) -> tuple[FeedFacts, list[tuple[Any, ...]]]:
    """What :func:`extract` finds, with its facts as plain tuples instead (the FeedFacts
    returned holds none): each ``key``, the supplier, then a :class:`Fact`'s fields in their
    order, ``as_of`` as ``instant`` maps it and ``claimed_assurance`` as ``level`` maps it
    (called once a record). Why: the index stores a feed's hundreds of facts as rows of that
    shape, which built here are final, not Facts, then dicts, then tuples again."""
    header = feed["header"]
    organization = header["supplier"]
    first = organization["identifiers"][0]
    supplier = f"{first['scheme']}:{first['code']}"
    characteristics = {
        c["id"]: c for c in feed.get("characteristics") or [] if isinstance(c, Mapping)
    }
    sites = {s["id"]: s for s in feed.get("sites") or [] if isinstance(s, Mapping)}
    known = catalogue()
    in_characteristic_unit = _in_characteristic_unit()
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    certifications: list[Certification] = []
    numbers: list[tuple[str, float, str | None]] = []
    for section, records in feed.items():
        if not section.endswith("_records") or not isinstance(records, list):
            continue
        for record in records:
            if not isinstance(record, dict):  # a parsed feed: plain dicts
                continue
            named = record.get("characteristic")
            characteristic = characteristics.get(named)
            char_unit = characteristic.get("unit") if characteristic else None
            special = characteristic.get("special_characteristic_class") if characteristic else None
            site, product = record.get("site"), record.get("product")
            as_of = instant(_time(record.get("as_of")))
            claimed = level(str((record.get("assurance") or {}).get("level", "self_declared")))
            record_id = str(record.get("id"))
            numbers.clear()
            _numbers(record, section, None, numbers)
            for metric, value, unit in numbers:
                if metric not in known:
                    continue
                if unit is None and metric in in_characteristic_unit:
                    unit = char_unit
                if unit is None:
                    base_value, base_unit = value, None
                else:
                    try:
                        base_value, base_unit = to_base(value, unit)
                    except SchemaError:  # a unit the validator refused would never reach the log
                        base_value, base_unit = value, unit
                append((
                    key, supplier, section, record_id, metric, value, unit, base_value, base_unit,
                    site, product, named, special, as_of, claimed,
                ))  # fmt: skip
            if section == "certification_records":
                certifications.append(
                    Certification(
                        str(record.get("id")), str(record.get("scheme")),
                        str(record.get("status")), _date(record.get("valid_from")),
                        _date(record.get("valid_until")), record.get("certificate_number"),
                        record.get("site"),
                    )
                )  # fmt: skip
    classifications = tuple(
        (str(product["id"]), str(code["scheme"]), str(code["code"]))
        for product in feed.get("products") or []
        for code in product.get("classifications") or []
    )
    countries = {organization.get("country")} | {
        (site.get("address") or {}).get("country") for site in sites.values()
    }
    found = FeedFacts(
        supplier,
        str(organization["name"]),
        organization.get("country"),
        str(header.get("feed_id", "")),
        int(header["sequence"]),
        datetime.fromisoformat(header["issued_at"]),
        (),
        tuple(certifications),
        classifications,
        tuple(sorted(c for c in countries if isinstance(c, str))),
    )
    return found, rows


def unit_kind(unit: str) -> str | None:
    """The quantity kind of a unit code, or None for an unknown code."""
    known = units().get(unit)
    return None if known is None else str(known["quantity_kind"])
