"""A buyer's search, parsed and checked: what may be asked, in which units, and how a wrong
request is explained. Pure: query-string values in, a :class:`SupplierQuery` out.

A condition names a metric of the standard (see :func:`sqm.registry.facts.catalogue`), an
operator and a threshold, with a unit when the metric carries one::

    capability_records.cpk>=1.33
    defect_rate_records.ppm<=50
    lead_time_records.quoted_lead_time<=3 WEE      (compared with 21 DAY, 504 HUR, ...)

By default every in-scope value of the supplier's latest feed must meet each condition
(``match=all``, what a cautious buyer means); ``match=any`` asks for at least one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqm.registry.errors import RegistryError
from sqm.registry.facts import ASSURANCE_ORDER, UNIT_KINDS, catalogue, unit_kind
from sqm.schema.artifacts import to_base

MAX_CONDITIONS = 8
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
OPERATORS = (">=", "<=", ">", "<", "=")
SORTS = ("supplier", "name", "issued_at", "-issued_at")
FIELDS: tuple[str, ...] = (
    "supplier", "name", "country", "verification", "logIndex", "issuedAt", "feedSequence",
    "previousIndex", "assurance", "matches", "bundle", "proof",
)  # fmt: skip
CHARACTERISTIC_CLASSES = ("critical", "significant", "key", "standard")
_CONDITION = re.compile(
    r"^\s*(?P<metric>[a-z_]+(?:\.[a-z_0-9]+)+)\s*(?P<op>>=|<=|>|<|=)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[A-Z0-9]{1,3})?\s*$"
)
_KNOWN = frozenset(
    {
        "where", "match", "country", "certification", "valid_on", "classification",
        "characteristic_class", "assurance", "claimed_assurance", "fresh_within", "as_of",
        "sort", "limit", "cursor", "fields", "proofs",
    }
)  # fmt: skip


@dataclass
class QueryError(RegistryError):
    """A search the registry cannot run as asked: a stable code and how to fix it."""

    code: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float  # in the metric's base unit when it has a unit
    given: str  # as the buyer wrote it
    unit: str | None
    base_unit: str | None = None  # values in other kinds of unit never match


@dataclass(frozen=True)
class SupplierQuery:
    conditions: tuple[Condition, ...] = ()
    match: str = "all"
    country: str | None = None
    certification: str | None = None
    valid_on: date | None = None
    classification: tuple[str, str] | None = None  # (scheme, code prefix)
    characteristic_class: str | None = None
    assurance: int | None = None  # minimum endorsed assurance rank
    claimed_assurance: int | None = None  # minimum claimed rank of the matched values
    fresh_since: datetime | None = None
    as_of: datetime | None = None
    sort: str = "supplier"
    limit: int = DEFAULT_LIMIT
    after: tuple[Any, str] | None = None  # the cursor: (sort key, supplier) of the last hit
    fields: tuple[str, ...] = FIELDS
    inline_proofs: bool = False
    fingerprint: str = field(default="", compare=False)


def _one(args: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = args.get(name) or []
    if len(values) > 1:
        raise QueryError("repeated_parameter", f"give {name} at most once")
    return values[0] if values else None


def _condition(text: str) -> Condition:
    found = _CONDITION.match(text)
    if found is None:
        raise QueryError(
            "invalid_condition",
            f"{text!r} is not METRIC OPERATOR NUMBER [UNIT], e.g. capability_records.cpk>=1.33 "
            "or lead_time_records.quoted_lead_time<=3 WEE",
        )
    metric, op, value, unit = found["metric"], found["op"], float(found["value"]), found["unit"]
    known = catalogue()
    if metric not in known:
        close = sorted(m for m in known if m.split(".")[0] == metric.split(".")[0])[:12]
        hint = f"; metrics of that section: {', '.join(close)}" if close else ""
        raise QueryError("unknown_metric", f"{metric!r} is not a metric of the standard{hint}")
    if known[metric].unit_bearing:
        if unit is None:
            raise QueryError(
                "unit_required",
                f"{metric} is measured in units: give one after the number (e.g. DAY, MMT, KGM)",
            )
        kind = unit_kind(unit)
        if kind is None:
            raise QueryError("unknown_unit", f"{unit!r} is not a UN/ECE Rec 20 unit code of SQM")
        allowed = UNIT_KINDS.get(metric)
        if allowed is not None and kind not in allowed:
            raise QueryError(
                "unit_mismatch",
                f"{metric} is a {' or '.join(allowed)} quantity; {unit} measures {kind}",
            )
        base, base_unit = to_base(value, unit)
        return Condition(metric, op, base, text.strip(), unit, base_unit)
    if unit is not None:
        raise QueryError(
            "unexpected_unit", f"{metric} is a pure number (or a percentage): drop {unit!r}"
        )
    return Condition(metric, op, value, text.strip(), None)


def _level(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if value not in ASSURANCE_ORDER:
        raise QueryError("invalid_parameter", f"{name} must be one of {', '.join(ASSURANCE_ORDER)}")
    return ASSURANCE_ORDER.index(value)


def _duration(value: str) -> timedelta:
    found = re.fullmatch(r"P(?:(\d{1,5})D|(\d{1,4})W)|(\d{1,5})", value)
    if found is None:
        raise QueryError(
            "invalid_parameter",
            f"fresh_within must be days (30) or ISO 8601 PnD / PnW, got {value!r}",
        )
    days, weeks, plain = found.groups()
    return timedelta(days=int(days or plain or 0), weeks=int(weeks or 0))


def instant(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        raise QueryError("invalid_parameter", f"{name} must be an ISO 8601 date or time") from None
    except OverflowError:  # 0001-01-01T00:00+23:59, say: a time before UTC's first
        raise QueryError(
            "invalid_parameter", f"{name} must be a time from year 1 to 9999 in UTC"
        ) from None


def decode_cursor(cursor: str, fingerprint: str, sort: str = "supplier") -> tuple[Any, str]:
    """The (sort key, supplier) a cursor continues after, checked: a cursor is the client's to
    hold, so it is treated as the untrusted input it is."""
    forged = QueryError("invalid_cursor", "the cursor is not one this registry gave out")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
        key, supplier, search = data["k"], data["s"], data["q"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise forged from None
    if search != fingerprint:
        raise QueryError(
            "invalid_cursor", "the cursor belongs to another search: repeat its parameters"
        )
    if not _plain_text(supplier) or not _plain_text(key):
        raise forged
    if sort in ("issued_at", "-issued_at"):
        try:
            datetime.fromisoformat(key)
        except ValueError:
            raise forged from None
    return key, supplier


def _plain_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 512 and "\x00" not in value


def encode_cursor(key: Any, supplier: str, fingerprint: str) -> str:
    raw = json.dumps({"k": key, "s": supplier, "q": fingerprint}, default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse(args: Mapping[str, Sequence[str]], now: datetime) -> SupplierQuery:
    """A search from query-string parameters (each name to its list of values)."""
    unknown = sorted(set(args) - _KNOWN)
    if unknown:
        raise QueryError(
            "unknown_parameter",
            f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(_KNOWN))}",
        )
    wheres = list(args.get("where") or [])
    if len(wheres) > MAX_CONDITIONS:
        raise QueryError("too_many_conditions", f"at most {MAX_CONDITIONS} where conditions")
    conditions = tuple(_condition(text) for text in wheres)
    match = _one(args, "match") or "all"
    if match not in ("all", "any"):
        raise QueryError("invalid_parameter", "match must be all or any")
    country = _one(args, "country")
    if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
        raise QueryError("invalid_parameter", "country must be an ISO 3166-1 alpha-2 code, e.g. DE")
    certification = _one(args, "certification")
    if certification is not None and not re.fullmatch(r"[A-Z0-9_]{2,40}", certification):
        raise QueryError(
            "invalid_parameter", "certification must be a scheme code, e.g. IATF_16949"
        )
    valid_on_text = _one(args, "valid_on")
    valid_on = None
    if valid_on_text is not None:
        try:
            valid_on = date.fromisoformat(valid_on_text)
        except ValueError:
            raise QueryError(
                "invalid_parameter", "valid_on must be a date, e.g. 2026-11-27"
            ) from None
    if certification is not None and valid_on is None:
        valid_on = now.date()
    classification = None
    classification_text = _one(args, "classification")
    if classification_text is not None:
        found = re.fullmatch(
            r"([A-Z][A-Z0-9_]{1,15}):([A-Za-z0-9.\-]{1,40})(\*?)", classification_text
        )
        if found is None:
            raise QueryError(
                "invalid_parameter",
                "classification must be SCHEME:CODE, optionally ending in * for a prefix "
                "(UNSPSC:40141600, UNSPSC:4014*)",
            )
        classification = (found[1], found[2] + ("%" if found[3] else ""))
    characteristic_class = _one(args, "characteristic_class")
    if characteristic_class is not None and characteristic_class not in CHARACTERISTIC_CLASSES:
        raise QueryError(
            "invalid_parameter",
            f"characteristic_class must be one of {', '.join(CHARACTERISTIC_CLASSES)}",
        )
    fresh = _one(args, "fresh_within")
    as_of_text = _one(args, "as_of")
    sort = _one(args, "sort") or "supplier"
    if sort not in SORTS:
        raise QueryError("invalid_parameter", f"sort must be one of {', '.join(SORTS)}")
    limit_text = _one(args, "limit") or str(DEFAULT_LIMIT)
    if (
        not (limit_text.isascii() and limit_text.isdigit())
        or len(limit_text) > 6
        or not 1 <= int(limit_text) <= MAX_LIMIT
    ):
        raise QueryError("invalid_parameter", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    fields_text = _one(args, "fields")
    fields: tuple[str, ...] = FIELDS
    if fields_text is not None:
        fields = tuple(f.strip() for f in fields_text.split(",") if f.strip())
        wrong = [f for f in fields if f not in FIELDS]
        if wrong or not fields:
            raise QueryError("invalid_parameter", f"fields must be among {', '.join(FIELDS)}")
        if "supplier" not in fields:
            fields = ("supplier", *fields)
    proofs = _one(args, "proofs") or "link"
    if proofs not in ("link", "inline"):
        raise QueryError("invalid_parameter", "proofs must be link or inline")
    fingerprint = hashlib.sha256(
        json.dumps(
            {k: sorted(v) for k, v in sorted(args.items()) if k not in ("cursor", "limit")}
        ).encode()
    ).hexdigest()[:16]
    cursor = _one(args, "cursor")
    return SupplierQuery(
        conditions=conditions,
        match=match,
        country=country,
        certification=certification,
        valid_on=valid_on,
        classification=classification,
        characteristic_class=characteristic_class,
        assurance=_level(_one(args, "assurance"), "assurance"),
        claimed_assurance=_level(_one(args, "claimed_assurance"), "claimed_assurance"),
        fresh_since=None if fresh is None else now - _duration(fresh),
        as_of=None if as_of_text is None else instant(as_of_text, "as_of"),
        sort=sort,
        limit=int(limit_text),
        after=None if cursor is None else decode_cursor(cursor, fingerprint, sort),
        fields=fields,
        inline_proofs=proofs == "inline",
        fingerprint=fingerprint,
    )
