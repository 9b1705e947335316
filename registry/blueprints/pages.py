"""Web pages for people: search, supplier profiles with trend charts, attestations with their
verification, and the log. Server-rendered (Jinja, autoescaped), plain CSS, no JavaScript.

Every page links the machine-readable resource it shows. A wrong request gets an HTML page
that says what was wrong and how to fix it, with a 4xx status, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import StatementError
from werkzeug.exceptions import HTTPException

from sqm.registry import charts
from sqm.registry.db import (
    index_attestations,
    index_facts,
    index_suppliers,
    supplier_keys,
    suppliers,
)
from sqm.registry.facts import ASSURANCE_ORDER, catalogue
from sqm.registry.ingest import Ingest, RejectionError
from sqm.registry.log import SignedCheckpoint, TransparencyLog
from sqm.registry.profiles import HISTORY_LIMIT, Profiles
from sqm.registry.query import (
    CHARACTERISTIC_CLASSES,
    MAX_CONDITIONS,
    OPERATORS,
    QueryError,
    instant,
    parse,
)
from sqm.registry.search import SupplierSearch
from sqm.schema.artifacts import json_schema
from sqm.trust import TrustError, bundle, timestamp
from sqm.validator import Severity, validate

blueprint = Blueprint("pages", __name__)

MAX_QUERY_BYTES = 4096
MAX_ID_LENGTH = 200
MAX_LOG_INDEX = 2**63 - 1  # the log's BIGINT
MAX_RECORDS_SHOWN = 50
RECENT = 10
TREND_ATTESTATIONS = 60
# The page's own names for the parts of a condition; they are folded into ``where``.
ROW_FIELDS = ("metric", "op", "threshold")
CONDITIONS_TEXT = "conditions"
COMMON_METRICS = (
    ("capability_records.cpk", "Cpk (process capability)"),
    ("capability_records.ppk", "Ppk (process performance)"),
    ("defect_rate_records.ppm", "Defective parts per million (ppm)"),
    ("delivery_records.on_time_percent", "On-time delivery (%)"),
    ("delivery_records.otif_percent", "On time in full (%)"),
    ("lead_time_records.quoted_lead_time", "Quoted lead time (with a unit: DAY, WEE)"),
    ("lead_time_records.actual_lead_time.mean", "Mean actual lead time (with a unit)"),
)
HEADLINE = tuple(metric for metric, _ in COMMON_METRICS)
CHARTS = (
    charts.Spec(
        "chart-capability",
        "Process capability (Cpk)",
        (("capability_records.cpk", ""),),
        axis="Cpk",
        reading="Higher is better.",
        reference=(1.33, "Cpk 1.33"),
    ),
    charts.Spec(
        "chart-ppm",
        "Defective parts per million",
        (("defect_rate_records.ppm", ""),),
        unit="ppm",
        reading="Lower is better.",
    ),
    charts.Spec(
        "chart-on-time",
        "On-time delivery",
        (("delivery_records.on_time_percent", ""),),
        unit="%",
        reading="Higher is better.",
        ceiling=100.0,
    ),
    charts.Spec(
        "chart-lead-time",
        "Lead time",
        (
            ("lead_time_records.actual_lead_time.mean", "mean actual"),
            ("lead_time_records.quoted_lead_time", "quoted"),
        ),
        reading="Lower is better.",
    ),
)
VERIFICATION = {
    "verified": "The registry operator has checked that whoever holds this key is this "
    "organisation.",
    "unverified": "Nobody has checked that whoever registered this identity is this "
    "organisation: the signatures prove only that the same key holder published every feed.",
    "suspended": "The registry operator has suspended this identity: treat its claims with "
    "suspicion.",
}
SECURITY_HEADERS = {
    # No script runs on these pages, and no style or image comes from elsewhere.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


T = TypeVar("T")


class _Memo:
    """A small, thread-safe LRU of results that depend only on their key's content.

    Checking an RFC 3161 token costs ~15 ms of ASN.1 work; a checkpoint's token and an
    attestation's bundle do not change until the log grows, so their checks are reused."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str, compute: Callable[[], T]) -> T:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                found: T = self.items[key]
                return found
        value = compute()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


_CHECKED = _Memo(256)


def _digest(*parts: str | bytes) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hashed.update(len(data).to_bytes(8, "big") + data)
    return hashed.hexdigest()


def _root_id() -> str:
    return _digest(json.dumps(_log().trust_root().to_json(), sort_keys=True))


class PageError(Exception):
    """A request a page cannot answer: status, stable code, and how to fix it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _sqm() -> dict[str, Any]:
    found: dict[str, Any] = current_app.extensions["sqm"]
    return found


def _log() -> TransparencyLog:
    log: TransparencyLog = _sqm()["log"]
    return log


def _profiles() -> Profiles:
    profiles: Profiles = _sqm()["profiles"]
    return profiles


def _ingest() -> Ingest:
    ingest: Ingest = _sqm()["ingest"]
    return ingest


# --- page furniture -------------------------------------------------------------------------------


@blueprint.after_request
def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@blueprint.errorhandler(PageError)
def _page_error(error: PageError) -> ResponseReturnValue:
    return render_template(
        "error.html", status=error.status, code=error.code, message=error.message
    ), error.status


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    status = error.code or 500
    return render_template(
        "error.html",
        status=status,
        code=error.name.lower().replace(" ", "_"),
        message=error.description or error.name,
    ), status


def _time(value: Any) -> str:
    """An instant as people read it, in UTC."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return charts.number(float(value))
    return "—" if value is None else str(value)


@blueprint.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "fmt_time": _time,
        "fmt_value": _value,
        "chart_svg": charts.svg,
        "chart_rows": charts.table_rows,
        "swatch": charts.swatch,
        "VERIFICATION": VERIFICATION,
    }


def _only(*allowed: str) -> None:
    """Refuse query parameters a page does not take, naming the ones it does."""
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "none"
        raise PageError(
            400, "unknown_parameter", f"unknown parameter {unknown[0]!r}; this page takes: {known}"
        )


def _printable(pairs: Iterable[tuple[str, str]]) -> None:
    for name, value in pairs:
        if any(ord(c) < 32 or ord(c) == 127 for c in name + value):
            raise QueryError(
                "invalid_parameter", f"{name} must be printable text, without control characters"
            )


def _as_of() -> datetime | None:
    raw = request.args.get("as_of")
    if not raw:
        return None
    try:
        return instant(raw, "as_of")
    except QueryError as error:
        raise PageError(400, error.code, f"{error.message}, e.g. 2026-11-01") from None


# --- the log --------------------------------------------------------------------------------------


def _checkpoint(signed: SignedCheckpoint | None) -> dict[str, Any] | None:
    """What people need to know of a checkpoint, its timestamp checked against the trust root."""
    if signed is None:
        return None
    root = _log().trust_root()

    def check() -> tuple[str | None, str | None]:
        try:
            info = timestamp.verify(signed.timestamp, signed.note.encode(), root.tsa_ca)
        except TrustError as exc:
            return None, str(exc)
        return _time(info.gen_time), None

    key = _digest("stamp", _root_id(), signed.note, signed.timestamp)
    stamped, problem = _CHECKED.get(key, check)
    return {
        "origin": signed.checkpoint.origin,
        "size": signed.checkpoint.size,
        "root": base64.b64encode(signed.checkpoint.root).decode(),
        "note": signed.note,
        "timestamp": stamped,
        "timestampProblem": problem,
        "additionalTimestamps": len(signed.additional_timestamps),
    }


def _recent(limit: int = RECENT) -> list[dict[str, Any]]:
    attestation = index_attestations.c
    with _log().engine.connect() as connection:
        rows = connection.execute(
            select(
                attestation.log_index,
                attestation.supplier,
                attestation.issued_at,
                attestation.feed_sequence,
                attestation.assurance_rank,
                index_suppliers.c.name,
            )
            .outerjoin(index_suppliers, index_suppliers.c.supplier == attestation.supplier)
            .order_by(attestation.log_index.desc())
            .limit(limit)
        ).all()
    return [
        {
            "logIndex": int(row.log_index),
            "supplier": row.supplier,
            "name": row.name or row.supplier,
            "issuedAt": row.issued_at,
            "feedSequence": int(row.feed_sequence),
            "assurance": ASSURANCE_ORDER[int(row.assurance_rank)],
        }
        for row in rows
    ]


@blueprint.get("/")
def home() -> ResponseReturnValue:
    """What the registry is, a search form, and the latest checkpoint."""
    _only()
    return render_template(
        "home.html",
        checkpoint=_checkpoint(_log().latest()),
        recent=_recent(),
        form=_form([]),
        choices=_metric_choices(),
    )


@blueprint.get("/log")
def log_page() -> ResponseReturnValue:
    """The latest checkpoint, the log's size, its trust root and its newest attestations."""
    _only()
    log = _log()
    root = log.trust_root()
    return render_template(
        "log.html",
        checkpoint=_checkpoint(log.latest()),
        waiting=log.waiting(),
        root={
            "origin": root.origin,
            "verifierKey": root.log_key.encode(),
            "tsa": root.tsa_ca.subject.rfc4514_string(),
            "tsaValidFrom": _time(root.tsa_ca.not_valid_before_utc),
            "tsaValidUntil": _time(root.tsa_ca.not_valid_after_utc),
            "additionalTsas": len(root.additional_tsas),
        },
        recent=_recent(),
    )


# --- search ---------------------------------------------------------------------------------------


def _canonical(args: Any) -> tuple[list[tuple[str, str]], bool]:
    """The search's parameters in the API's own vocabulary, and whether the request said it
    otherwise (form rows, empty fields): such a request is redirected to the canonical URL, so
    that every search page has one address, shared with its JSON twin."""
    changed = False
    pairs: list[tuple[str, str]] = []
    rows = [args.getlist(name) for name in ROW_FIELDS]
    if any(rows):
        changed = True
        if len({len(column) for column in rows}) != 1:
            raise QueryError(
                "incomplete_condition",
                "each condition needs a metric, an operator and a threshold field",
            )
        for metric, op, threshold in zip(*rows, strict=True):
            if not threshold.strip():
                continue
            if op not in OPERATORS:
                raise QueryError(
                    "invalid_condition", f"the operator must be one of {' '.join(OPERATORS)}"
                )
            pairs.append(("where", f"{metric.strip()}{op}{threshold.strip()}"))
    for name, value in args.items(multi=True):
        if name in ROW_FIELDS:
            continue
        if name == CONDITIONS_TEXT:
            changed = True
            pairs += [("where", line.strip()) for line in value.splitlines() if line.strip()]
            continue
        if not value.strip():
            changed = True
            continue
        if name == "country" and value != value.strip().upper():
            changed, value = True, value.strip().upper()
        pairs.append((name, value))
    # Conditions first, as the form shows them.
    pairs.sort(key=lambda pair: pair[0] != "where")
    return pairs, changed


_LOOSE_CONDITION = re.compile(r"^\s*([a-z_][a-z_0-9.]*)\s*(>=|<=|>|<|=)\s*(.+?)\s*$")


def _form(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What the search form shows: condition rows and the value of each other field."""
    rows: list[dict[str, str]] = []
    other: list[str] = []
    for name, value in pairs:
        if name != "where":
            continue
        found = _LOOSE_CONDITION.match(value)
        if found and len(rows) < MAX_CONDITIONS:
            rows.append({"metric": found[1], "op": found[2], "threshold": found[3]})
        else:
            other.append(value)
    wanted = max(2, min(len(rows) + 1, MAX_CONDITIONS))
    while len(rows) < wanted:
        rows.append({"metric": COMMON_METRICS[0][0], "op": ">=", "threshold": ""})
    values = {name: value for name, value in pairs if name != "where"}
    return {
        "rows": rows,
        "conditions": "\n".join(other),
        "values": values,
        "more": any(
            values.get(name)
            for name in (
                "characteristic_class",
                "claimed_assurance",
                "valid_on",
                "fresh_within",
                "as_of",
                "match",
            )
        )
        or bool(other),
    }


def _metric_choices() -> dict[str, Any]:
    sections: dict[str, list[str]] = {}
    for metric in catalogue().values():
        sections.setdefault(metric.section, []).append(metric.name)
    schemes = json_schema()["$defs"].get("CertificationScheme", {}).get("enum", [])
    return {
        "common": COMMON_METRICS,
        "sections": sections,
        "known": frozenset(catalogue()),
        "operators": OPERATORS,
        "schemes": schemes,
        "assurance": ASSURANCE_ORDER,
        "classes": CHARACTERISTIC_CLASSES,
    }


@blueprint.get("/suppliers")
def search() -> ResponseReturnValue:
    """Search suppliers with the API's filters (GET /api/v1/search/suppliers), as a form."""
    status = 200
    error: QueryError | None = None
    pairs: list[tuple[str, str]] = []
    result: dict[str, Any] | None = None
    try:
        if len(request.query_string) > MAX_QUERY_BYTES:
            raise QueryError(
                "request_too_large", f"a search fits in {MAX_QUERY_BYTES} bytes of query string"
            )
        pairs, changed = _canonical(request.args)
        _printable(pairs)
        if changed:
            target = url_for(".search") + ("?" + urlencode(pairs) if pairs else "")
            return redirect(target, 303)
        result = _run(pairs)
    except QueryError as raised:
        error, status, result = raised, raised.status, None
    api = url_for("search.search_suppliers") + ("?" + urlencode(pairs) if pairs else "")
    first = [pair for pair in pairs if pair[0] != "cursor"]
    next_page = None
    if result is not None and result["next"]:
        next_page = url_for(".search") + "?" + urlencode([*first, ("cursor", result["next"])])
    return render_template(
        "suppliers.html",
        error=error,
        result=result,
        pairs=pairs,
        api=api,
        next_page=next_page,
        first_page=(url_for(".search") + ("?" + urlencode(first) if first else ""))
        if any(name == "cursor" for name, _ in pairs)
        else None,
        form=_form(pairs),
        choices=_metric_choices(),
    ), status


def _run(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    args: dict[str, list[str]] = {}
    for name, value in pairs:
        args.setdefault(name, []).append(value)
    now = datetime.now(UTC)
    query = parse(args, now)
    engine: SupplierSearch = _sqm()["search"]
    try:
        return engine.run(query, now)
    except (ValueError, TypeError, StatementError):
        # A cursor is a client-held token: one edited by hand may decode yet name a value the
        # database cannot compare. Anything else is the registry's fault and stays a 500.
        if query.after is None:
            raise
        raise QueryError("invalid_cursor", "the cursor is not one this registry gave out") from None


# --- suppliers ------------------------------------------------------------------------------------


def _supplier_id(supplier: str) -> str:
    if len(supplier) > MAX_ID_LENGTH or any(ord(c) < 32 for c in supplier):
        raise PageError(
            400,
            "invalid_supplier_id",
            f"a supplier id is SCHEME:CODE (e.g. LEI:529900SQMKRAFTWERK41), printable and at "
            f"most {MAX_ID_LENGTH} characters",
        )
    return supplier


def _facts(supplier: str, metrics: Sequence[str], as_of: datetime | None) -> list[charts.Fact]:
    """The supplier's values of ``metrics`` in its newest attestations, for the trend charts.

    Series follow what was measured (characteristic, product, site), not record ids, which
    suppliers often renew each period; the newest attestations are found through the
    supplier's index first, so the cost does not grow with other suppliers' facts."""
    attestation = index_attestations.c
    recent = select(attestation.log_index, attestation.issued_at).where(
        attestation.supplier == supplier
    )
    if as_of is not None:
        recent = recent.where(attestation.issued_at <= as_of)
    latest = recent.order_by(attestation.log_index.desc()).limit(TREND_ATTESTATIONS).subquery()
    fact = index_facts.c
    with _log().engine.connect() as connection:
        rows = connection.execute(
            select(
                fact.metric,
                fact.log_index,
                fact.value,
                fact.unit,
                fact.base_value,
                fact.base_unit,
                fact.site,
                fact.product,
                fact.characteristic,
                fact.as_of,
                latest.c.issued_at,
            )
            .join(latest, latest.c.log_index == fact.log_index)
            .where(fact.metric.in_(metrics))
            .order_by(fact.log_index)
        ).all()
    return [
        charts.Fact(
            row.metric, int(row.log_index), float(row.value), row.unit, float(row.base_value),
            row.base_unit, row.site, row.product, row.characteristic,
            row.as_of or row.issued_at,
        )
        for row in rows
    ]  # fmt: skip


def _names(feed: Mapping[str, Any] | None) -> dict[str, str]:
    names: dict[str, str] = {}
    for section in ("sites", "products", "characteristics"):
        for item in (feed or {}).get(section) or []:
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                names[item["id"]] = str(item.get("name") or item["id"])
    return names


def _valid_today(certificate: Mapping[str, Any], today: date) -> bool:
    start, end = certificate.get("validFrom"), certificate.get("validUntil")
    return (
        certificate.get("status") == "active"
        and (start is None or date.fromisoformat(start[:10]) <= today)
        and (end is None or date.fromisoformat(end[:10]) >= today)
    )


def _chain(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows, each saying whether it names the attestation listed before it, so that a
    hidden or skipped attestation shows."""
    rows = []
    for position, entry in enumerate(history):
        older = history[position + 1]["logIndex"] if position + 1 < len(history) else None
        complete = position + 1 < len(history) or len(history) < HISTORY_LIMIT
        linked = entry["previousIndex"] == older if complete else None
        rows.append({**entry, "linked": linked})
    return rows


@blueprint.get("/suppliers/<supplier>")
def supplier(supplier: str) -> ResponseReturnValue:
    """A supplier: identity and verification, sites, certifications, metrics, trends, history."""
    _only("as_of")
    supplier = _supplier_id(supplier)
    as_of = _as_of()
    profile = _profiles().supplier(supplier, as_of)
    if profile is None:
        raise PageError(
            404,
            "no_such_supplier",
            f"no registered supplier {supplier!r}; find suppliers on the search page",
        )
    latest = profile["latest"]
    feed = None if latest is None else _profiles().feed(latest["logIndex"])
    names = _names(feed)
    metrics = sorted({metric for spec in CHARTS for metric, _ in spec.metrics})
    facts = _facts(supplier, metrics, as_of) if latest is not None else []
    drawn = [charts.build(spec, facts, names) for spec in CHARTS]
    sections: dict[str, list[dict[str, Any]]] = {}
    for metric in profile["metrics"]:
        sections.setdefault(metric["metric"].split(".")[0], []).append(metric)
    today = (as_of or datetime.now(UTC)).date()
    api = url_for("resources.supplier", supplier=supplier)
    query = f"?as_of={as_of.isoformat()}" if as_of else ""
    return render_template(
        "supplier.html",
        profile=profile,
        sites=[s for s in (feed or {}).get("sites") or [] if isinstance(s, Mapping)],
        names=names,
        headline=[m for m in profile["metrics"] if m["metric"] in HEADLINE],
        sections=sections,
        certifications=[
            {**c, "validToday": _valid_today(c, today)} for c in profile["certifications"]
        ],
        charts=drawn,
        history=_chain(profile["history"]),
        as_of=as_of,
        today=today,
        api={
            "profile": api + query,
            "history": url_for("resources.history", supplier=supplier) + query,
            "trend": url_for("resources.trend", supplier=supplier)
            + "?"
            + urlencode([("metric", metric) for metric in metrics]),
        },
    )


# --- attestations ---------------------------------------------------------------------------------


def _log_index(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_LOG_INDEX:
        raise PageError(
            400,
            "invalid_log_index",
            f"a log index is a whole number from 0 to {MAX_LOG_INDEX}, got {raw[:40]!r}",
        )
    return int(raw)


def _flatten(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """A record's fields as (dotted path, text), lists numbered from 1."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            yield from _flatten(item, f"{path}.{name}" if path else str(name))
    elif isinstance(value, list) and any(isinstance(item, Mapping | list) for item in value):
        for number, item in enumerate(value, 1):
            yield from _flatten(item, f"{path}[{number}]")
    elif isinstance(value, list):
        yield path, ", ".join(_value(item) for item in value)
    else:
        yield path, _value(value)


def _section(name: str, records: list[Any]) -> dict[str, Any]:
    """A list section of a feed as a table: one column per record, one row per field."""
    shown = [r for r in records if isinstance(r, Mapping)][:MAX_RECORDS_SHOWN]
    flat = [dict(_flatten(record)) for record in shown]
    fields: dict[str, None] = {}
    for record in flat:
        fields.update(dict.fromkeys(record))
    fields.pop("id", None)
    return {
        "name": name,
        "title": name.replace("_", " ").capitalize(),
        "ids": [str(record.get("id", f"#{n}")) for n, record in enumerate(shown, 1)],
        "rows": [(field, [record.get(field, "") for record in flat]) for field in fields],
        "hidden": len(records) - len(shown),
    }


def _verification(made: bundle.Bundle) -> tuple[bundle.Report, datetime | None]:
    """The bundle verified as ``sqm verify`` does, against this registry's trust root, and the
    time its first checkpoint was stamped (when it was logged). The result depends only on the
    bundle and the root, so it is reused until the log grows."""
    root = _log().trust_root()
    key = _digest("bundle", _root_id(), json.dumps(made.to_json(), sort_keys=True))
    return _CHECKED.get(key, lambda: _verify(made, root))


def _verify(made: bundle.Bundle, root: bundle.TrustRoot) -> tuple[bundle.Report, datetime | None]:
    report = bundle.verify(made, root)
    if report.feed is not None:
        # Time rules are judged as of the trusted timestamp, as `sqm verify` does.
        result = validate(report.feed, now=report.timestamp)
        errors = [f for f in result.findings if f.severity is Severity.ERROR]
        detail = (
            "valid"
            if not errors
            else f"{len(errors)} errors, first: {errors[0].code} {errors[0].message}"
        )
        report.steps.append(bundle.Step("feed valid", not errors, detail))
    return report, report.logged  # None when that step failed, which the report says why


def _keys(key_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    with _log().engine.connect() as connection:
        rows = connection.execute(
            select(
                supplier_keys.c.key_id,
                supplier_keys.c.supplier,
                supplier_keys.c.valid_from,
                supplier_keys.c.revoked_at,
            ).where(supplier_keys.c.key_id.in_(key_ids))
        ).all()
    return {
        row.key_id: {
            "supplier": row.supplier,
            "validFrom": row.valid_from,
            "revokedAt": row.revoked_at,
        }
        for row in rows
    }


@blueprint.get("/attestations/<index>")
def attestation(index: str) -> ResponseReturnValue:
    """An attestation: its claims, signature, assurance, endorsements, log position, timestamp
    and the result of verifying its bundle here."""
    _only()
    number = _log_index(index)
    summary = _profiles().attestation_summary(number)
    feed = _profiles().feed(number)
    if summary is None or feed is None:
        raise PageError(
            404,
            "no_such_attestation",
            f"log entry {number} is not an attestation of this registry (it may be a key "
            "registration or an endorsement, or beyond the log's end)",
        )
    try:
        made = _ingest().bundle_at(number)
    except RejectionError as error:
        raise PageError(error.status, error.code, error.message) from None
    report, logged = _verification(made)
    key_ids = [signature.keyid for signature in made.envelope.signatures]
    keys = _keys(key_ids)
    with _log().engine.connect() as connection:
        identity = (
            connection.execute(
                select(suppliers.c.name, suppliers.c.verification).where(
                    suppliers.c.id == summary["supplier"]
                )
            )
            .mappings()
            .first()
        )
    sections = [
        _section(name, records)
        for name, records in feed.items()
        if isinstance(records, list) and records and isinstance(records[0], Mapping)
    ]
    claimed = sorted(
        {
            str((record.get("assurance") or {}).get("level", "self_declared"))
            for name, records in feed.items()
            if name.endswith("_records") and isinstance(records, list)
            for record in records
            if isinstance(record, Mapping)
        },
        key=lambda level: ASSURANCE_ORDER.index(level) if level in ASSURANCE_ORDER else -1,
    )
    return render_template(
        "attestation.html",
        summary=summary,
        header=feed.get("header") or {},
        header_rows=list(_flatten(feed.get("header") or {})),
        sections=sections,
        report=report,
        logged=logged,
        made=made,
        signatures=[{"keyId": key_id, **keys.get(key_id, {})} for key_id in key_ids],
        supplier=dict(identity or {}),
        claimed=claimed,
        endorsements=_ingest().endorsements_of(number),
        api={
            "attestation": url_for("resources.attestation", index=number),
            "bundle": url_for("attest.bundle_at", index=number),
            "endorsements": url_for("attest.endorsements_of", index=number),
            "entry": url_for("log.entry", index=number),
            "trustRoot": url_for("attest.trust_root"),
        },
    )
