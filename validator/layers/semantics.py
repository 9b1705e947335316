"""Layer 3, semantics: what one record must satisfy that the schema cannot say.

Each check reads one item (and, for capability, the declared characteristic it refers to) and
appends its findings, in order, to a list. Values the structure layer already rejects are
skipped, not reported twice.

The checks run once per record of feeds with millions of them, so they append to a list
instead of yielding (a generator per check costs more than most checks), and the time checks,
whose inputs feeds repeat thousands of times (period bounds, as-of instants), remember their
verdict per distinct combination of inputs.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqm.schema import units
from sqm.validator import checkdigits
from sqm.validator.context import CharacteristicSpec, FeedContext, day, integer, number, timestamp
from sqm.validator.findings import Finding
from sqm.validator.rules import emit

# Clocks differ; a timestamp this far ahead of ours is not yet "in the future".
CLOCK_SKEW = timedelta(minutes=5)
# Published indices are rounded (Cpk to 2 decimals, sigma to 2 significant digits).
RELATIVE_TOLERANCE = 0.05
ABSOLUTE_TOLERANCE = 0.015

Out = list[Finding]
Check = Callable[[Mapping[str, Any], str, FeedContext, Out], None]
# A finding relative to the item it is about: code, message, pointer below the item, value.
Template = tuple[str, str, str, Any]


def _kind(unit: Any) -> str | None:
    entry = units().get(unit) if isinstance(unit, str) else None
    return entry["quantity_kind"] if entry else None


def _unit_of_kind(
    unit: Any, kinds: tuple[str, ...], at: str, below: str, what: str, out: Out
) -> None:
    """E001 at ``at + below`` unless ``unit`` is unknown or of one of the ``kinds``."""
    kind = _kind(unit)
    if kind is not None and kind not in kinds:
        out.append(
            emit(
                "SQM-E001",
                f"{what} in {unit} ({units()[unit]['name']}, a {kind} unit); expected a "
                f"{' or '.join(kinds)} unit",
                at + below,
                value=unit,
            )
        )


def _close(claimed: float, computed: float) -> bool:
    return abs(claimed - computed) <= max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(computed))


def instantiate(templates: tuple[Template, ...], at: str, out: Out) -> None:
    """Findings from templates (see :func:`memoized`), placed below ``at``."""
    for code, message, below, value in templates:
        out.append(emit(code, message, at + below, value=value))


def memoized(
    ctx: FeedContext,
    key: tuple[Any, ...],
    compute: Callable[..., tuple[Template, ...]],
    *args: Any,
) -> tuple[Template, ...]:
    """The findings templates ``compute(*args)`` gives, remembered under ``key`` for this
    context.

    Only for checks whose findings depend on nothing but ``args`` (all in ``key``) and
    ``ctx.now``; keys that are not hashable are computed every time. The memory is bounded."""
    memo = ctx.memo
    if ctx.memo_now is not ctx.now:
        memo.clear()
        ctx.memo_now = ctx.now
    try:
        return memo[key]  # type: ignore[no-any-return]
    except KeyError:
        pass
    except TypeError:  # an unhashable value (a broken item): no memory
        return compute(*args)
    found = compute(*args)
    if len(memo) >= 4096:
        memo.clear()
    memo[key] = found
    return found


# --- common to every record --------------------------------------------------------------------


def check_times(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    """Period order, nothing in the future, as-of and next update in order."""
    get = item.get
    period = get("period")
    if isinstance(period, dict):
        key = (
            "times",
            period.get("start"),
            period.get("end"),
            get("as_of"),
            get("next_update_due"),
        )
    else:
        # No period: no period finding, and as_of is compared with no start.
        key = ("times", None, None, get("as_of"), get("next_update_due"))
    try:
        found = ctx.memo[key] if ctx.memo_now is ctx.now else None
    except (KeyError, TypeError):
        found = None
    if found is None:
        found = memoized(ctx, key, _times, ctx, *key[1:])
    if found:
        instantiate(found, at, out)


def _times(
    ctx: FeedContext, start_v: Any, end_v: Any, as_of_v: Any, due_v: Any
) -> tuple[Template, ...]:
    found: list[Template] = []
    horizon = ctx.now + CLOCK_SKEW
    start, end = timestamp(start_v), timestamp(end_v)
    if start and end and start >= end:
        found.append(
            ("SQM-E009", "the period ends before (or when) it starts", "/period/end", end_v)
        )
    if end and end > horizon:
        found.append(("SQM-E010", "the period ends in the future", "/period/end", end_v))
    as_of = timestamp(as_of_v)
    if as_of and as_of > horizon:
        found.append(("SQM-E010", "as_of lies in the future", "/as_of", as_of_v))
    if as_of and start and as_of < start:
        found.append(
            ("SQM-E011", "as_of precedes the start of the period it reports", "/as_of", as_of_v)
        )
    due = timestamp(due_v)
    if as_of and due and due <= as_of:
        found.append(("SQM-E011", "next_update_due is not after as_of", "/next_update_due", due_v))
    return tuple(found)


def check_header(header: Mapping[str, Any], ctx: FeedContext) -> Iterator[Finding]:
    """The header's own times and its supplier's identifiers."""
    out: Out = []
    check_times({"period": header.get("period")}, "/header", ctx, out)
    issued = timestamp(header.get("issued_at"))
    if issued and issued > ctx.now + CLOCK_SKEW:
        out.append(
            emit(
                "SQM-E010",
                "the feed is issued in the future",
                "/header/issued_at",
                value=header.get("issued_at"),
            )
        )
    supplier = header.get("supplier")
    if isinstance(supplier, dict):
        check_party(supplier, "/header/supplier", out)
    return iter(out)


# --- identifiers and codes ---------------------------------------------------------------------


def check_identifiers(values: Any, at: str, out: Out) -> None:
    """Check digits of LEIs (ISO 17442) and GLNs/GTINs (GS1 mod 10)."""
    if not isinstance(values, list):
        return
    for index, identifier in enumerate(values):
        if not isinstance(identifier, dict):
            continue
        scheme, code = identifier.get("scheme"), identifier.get("code")
        if not isinstance(code, str):
            continue
        if scheme == "LEI" and len(code) == 20 and not checkdigits.lei_is_valid(code):
            out.append(
                emit(
                    "SQM-E015",
                    f"LEI {code} fails its ISO 7064 mod 97-10 check",
                    f"{at}/{index}/code",
                    value=code,
                )
            )
        if scheme in ("GLN", "GTIN") and code.isdigit() and not checkdigits.ean_is_valid(code):
            out.append(
                emit(
                    "SQM-E016",
                    f"{scheme} {code} fails its GS1 check digit",
                    f"{at}/{index}/code",
                    value=code,
                )
            )


@cache
def _country_codes() -> frozenset[str]:
    """The ISO 3166-1 alpha-2 codes pycountry knows, lowercased as its lookups compare them.

    Read from pycountry's own database file: importing pycountry (and the package metadata
    machinery it imports) costs more memory than a streaming validator can spare for 249
    codes. ``tests/validator/test_fast_paths.py`` proves the verdicts equal
    ``pycountry.countries.get(alpha_2=code) is not None``."""
    spec = importlib.util.find_spec("pycountry")
    try:
        assert spec is not None and spec.origin is not None
        path = Path(spec.origin).parent / "databases" / "iso3166-1.json"
        entries = json.loads(path.read_text(encoding="utf-8"))["3166-1"]
        return frozenset(str(e["alpha_2"]).lower() for e in entries if "alpha_2" in e)
    except (AssertionError, OSError, ValueError, KeyError, TypeError):
        import pycountry  # a layout this code does not know: ask pycountry itself

        return frozenset(country.alpha_2.lower() for country in pycountry.countries)


def _assigned_country(code: str) -> bool:
    return code.lower() in _country_codes()


def check_country(value: Any, at: str, out: Out) -> None:
    """ISO 3166-1 alpha-2 membership (the schema checks only the shape)."""
    shaped = isinstance(value, str) and len(value) == 2 and value.isupper()
    if shaped and not _assigned_country(value):
        out.append(
            emit("SQM-E013", f"{value} is not an assigned ISO 3166-1 alpha-2 code", at, value=value)
        )


def check_party(party: Mapping[str, Any], at: str, out: Out) -> None:
    """An organisation's identifiers and country."""
    check_identifiers(party.get("identifiers"), f"{at}/identifiers", out)
    check_country(party.get("country"), f"{at}/country", out)


def _parties(item: Mapping[str, Any], at: str, out: Out) -> None:
    assurance = item.get("assurance")
    if isinstance(assurance, dict) and isinstance(assurance.get("assurer"), dict):
        check_party(assurance["assurer"], f"{at}/assurance/assurer", out)


# --- declarations -------------------------------------------------------------------------------


def check_site(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    check_identifiers(item.get("identifiers"), f"{at}/identifiers", out)
    address = item.get("address")
    if isinstance(address, dict):
        check_country(address.get("country"), f"{at}/address/country", out)


def check_product(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    check_identifiers(item.get("classifications"), f"{at}/classifications", out)


def check_characteristic(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    lower, upper = number(item.get("lower_spec_limit")), number(item.get("upper_spec_limit"))
    if lower is not None and upper is not None:
        if lower >= upper:
            out.append(
                emit(
                    "SQM-E002",
                    f"lower_spec_limit {lower:g} is not below upper_spec_limit {upper:g}",
                    f"{at}/lower_spec_limit",
                    value=item.get("lower_spec_limit"),
                )
            )
            return
        for name in ("nominal", "target"):
            value = number(item.get(name))
            if value is not None and not lower <= value <= upper:
                out.append(
                    emit(
                        "SQM-E021",
                        f"{name} {value:g} lies outside {lower:g}..{upper:g}",
                        f"{at}/{name}",
                        value=value,
                    )
                )


# --- metric records -----------------------------------------------------------------------------


def spec_of(item: Mapping[str, Any], ctx: FeedContext) -> CharacteristicSpec | None:
    ref = item.get("characteristic")
    return ctx.characteristics.get(ref) if isinstance(ref, str) else None


def check_capability(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    """Index ordering, one-sided specs, consistency with limits/mean/sigma, subgroup counts."""
    get = item.get
    # number() inlined for the usual float: this runs for every capability record.
    cp, cpk, pp, ppk = get("cp"), get("cpk"), get("pp"), get("ppk")
    cp = cp if type(cp) is float else number(cp)
    cpk = cpk if type(cpk) is float else number(cpk)
    pp = pp if type(pp) is float else number(pp)
    ppk = ppk if type(ppk) is float else number(ppk)
    if cp is not None and cpk is not None and cpk > cp + 1e-9:
        out.append(emit("SQM-E003", f"Cpk {cpk:g} is above Cp {cp:g}", f"{at}/cpk", value=cpk))
    if pp is not None and ppk is not None and ppk > pp + 1e-9:
        out.append(emit("SQM-E003", f"Ppk {ppk:g} is above Pp {pp:g}", f"{at}/ppk", value=ppk))
    n, size, count = get("sample_size"), get("subgroup_size"), get("subgroup_count")
    if type(n) is not int:
        n = None
    if type(size) is not int:
        size = None
    if type(count) is not int:
        count = None
    if n and size and count and n != size * count:
        out.append(
            emit(
                "SQM-E020",
                f"sample_size {n} is not subgroup_size {size} x subgroup_count {count} = {size * count}",
                f"{at}/sample_size",
                value=n,
            )
        )
    ref = get("characteristic")
    spec = ctx.characteristics.get(ref) if isinstance(ref, str) else None
    if spec is None:
        return
    lower, upper = spec.lower, spec.upper
    if lower is None or upper is None:
        for name, value in (("cp", cp), ("pp", pp)):
            if value is not None:
                out.append(
                    emit(
                        "SQM-E005",
                        f"{name} needs both specification limits; {ref} has one",
                        f"{at}/{name}",
                        value=value,
                    )
                )
    mean = get("process_mean")
    mean = mean if type(mean) is float else number(mean)
    for sigma_name, spread_name, index_name, spread, index in (
        ("sigma_within", "cp", "cpk", cp, cpk),
        ("sigma_overall", "pp", "ppk", pp, ppk),
    ):
        sigma = get(sigma_name)
        sigma = sigma if type(sigma) is float else number(sigma)
        if sigma is None or sigma <= 0:
            continue
        if spread is not None and lower is not None and upper is not None:
            expected = (upper - lower) / (6 * sigma)
            # _close(spread, expected), inlined
            if not abs(spread - expected) <= max(
                ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(expected)
            ):
                out.append(
                    emit(
                        "SQM-E004",
                        f"{spread_name} {spread:g} but the limits and {sigma_name} {sigma:g} give {expected:.2f}",
                        f"{at}/{spread_name}",
                        value=spread,
                    )
                )
        if index is not None and mean is not None and (lower is not None or upper is not None):
            if upper is not None and lower is not None:
                nearer = min(upper - mean, mean - lower)
            elif upper is not None:
                nearer = upper - mean
            else:
                nearer = mean - lower  # type: ignore[operator]
            expected = nearer / (3 * sigma)
            if not abs(index - expected) <= max(
                ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(expected)
            ):
                out.append(
                    emit(
                        "SQM-E004",
                        f"{index_name} {index:g} but the limits, process_mean {mean:g} and {sigma_name} {sigma:g} give {expected:.2f}",
                        f"{at}/{index_name}",
                        value=index,
                    )
                )


def check_defects(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    get = item.get
    inspected, defective = integer(get("inspected_count")), integer(get("defective_count"))
    defects, opportunities = integer(get("defect_count")), integer(get("opportunities_per_unit"))
    if inspected is not None and defective is not None and defective > inspected:
        out.append(
            emit(
                "SQM-E006",
                f"defective_count {defective} exceeds inspected_count {inspected}",
                f"{at}/defective_count",
                value=defective,
            )
        )
        return
    received, rejected = integer(get("lots_received")), integer(get("lots_rejected"))
    if received is not None and rejected is not None and rejected > received:
        out.append(
            emit(
                "SQM-E006",
                f"lots_rejected {rejected} exceeds lots_received {received}",
                f"{at}/lots_rejected",
                value=rejected,
            )
        )
    categories = get("defect_categories")
    if isinstance(categories, list):
        total = 0
        for category in categories:
            if isinstance(category, dict):
                counted = integer(category.get("count"))
                if counted:
                    total += counted
        ceiling = defects if defects is not None else defective
        if ceiling is not None and total > ceiling and get("counting_rule") != "per_defect":
            out.append(
                emit(
                    "SQM-E006",
                    f"defect categories add up to {total}, more than the {ceiling} counted",
                    f"{at}/defect_categories",
                    value=total,
                )
            )
    ppm = number(get("ppm"))
    if ppm is not None and inspected and defective is not None:
        expected = defective / inspected * 1e6
        if abs(ppm - expected) > max(0.5, 0.005 * expected):
            out.append(
                emit(
                    "SQM-E007",
                    f"ppm {ppm:g} but {defective} / {inspected} x 10^6 = {expected:.2f}",
                    f"{at}/ppm",
                    value=ppm,
                )
            )
    dpmo = number(get("dpmo"))
    if dpmo is not None and inspected and defects is not None and opportunities:
        expected = defects / (inspected * opportunities) * 1e6
        if abs(dpmo - expected) > max(0.5, 0.005 * expected):
            out.append(
                emit(
                    "SQM-E007",
                    f"dpmo {dpmo:g} but {defects} / ({inspected} x {opportunities}) x 10^6 = {expected:.2f}",
                    f"{at}/dpmo",
                    value=dpmo,
                )
            )
    fpy = number(get("first_pass_yield"))
    if (
        fpy is not None
        and inspected
        and defective is not None
        and get("counting_rule") == "per_unit"
    ):
        passed_share = 100.0 * (inspected - defective) / inspected
        if fpy > passed_share + 0.05:
            out.append(
                emit(
                    "SQM-E007",
                    f"first_pass_yield {fpy:g} % but {defective} of {inspected} units failed (at most {passed_share:.2f} %)",
                    f"{at}/first_pass_yield",
                    value=fpy,
                )
            )


def check_delivery(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    otif = number(item.get("otif_percent"))
    if otif is None:
        return
    for name in ("on_time_percent", "in_full_percent"):
        part = number(item.get(name))
        if part is not None and otif > part + 1e-9:
            out.append(
                emit(
                    "SQM-E008",
                    f"otif_percent {otif:g} exceeds {name} {part:g}",
                    f"{at}/otif_percent",
                    value=otif,
                )
            )


_TIME = ("time",)


def check_lead_time(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    quoted = item.get("quoted_lead_time")
    if isinstance(quoted, dict):
        _unit_of_kind(
            quoted.get("unit"), _TIME, at, "/quoted_lead_time/unit", "quoted lead time", out
        )
    actual = item.get("actual_lead_time")
    if not isinstance(actual, dict):
        return
    _unit_of_kind(
        actual.get("unit"), _TIME, at, "/actual_lead_time/unit", "lead time distribution", out
    )
    get = actual.get
    low_v, median, p95, high_v = (
        number(get("minimum")),
        number(get("median")),
        number(get("p95")),
        number(get("maximum")),
    )
    # Each given value against the given value before it.
    low_name, low = "", None
    for high_name, high in (
        ("minimum", low_v),
        ("median", median),
        ("p95", p95),
        ("maximum", high_v),
    ):
        if high is None:
            continue
        if low is not None and low > high:
            out.append(
                emit(
                    "SQM-E017",
                    f"{low_name} {low:g} is above {high_name} {high:g}",
                    f"{at}/actual_lead_time/{high_name}",
                    value=high,
                )
            )
        low_name, low = high_name, high
    mean = number(get("mean"))
    if mean is not None and (
        (low_v is not None and mean < low_v) or (high_v is not None and mean > high_v)
    ):
        out.append(
            emit(
                "SQM-E017",
                f"mean {mean:g} lies outside minimum..maximum",
                f"{at}/actual_lead_time/mean",
                value=mean,
            )
        )


def check_traceability(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    check_country(item.get("country_of_origin"), f"{at}/country_of_origin", out)
    lots = item.get("lots")
    if isinstance(lots, list):
        for index, lot in enumerate(lots):
            if not isinstance(lot, dict):
                continue
            check_country(lot.get("country_of_origin"), f"{at}/lots/{index}/country_of_origin", out)
            quantity = lot.get("quantity")
            if isinstance(quantity, dict):
                _unit_of_kind(
                    quantity.get("unit"),
                    ("mass", "volume", "count", "length", "area"),
                    at,
                    f"/lots/{index}/quantity/unit",
                    "lot quantity",
                    out,
                )
            produced, expires = day(lot.get("produced_on")), day(lot.get("expires_on"))
            if produced and expires and expires < produced:
                out.append(
                    emit(
                        "SQM-E011",
                        "the lot expires before it was produced",
                        f"{at}/lots/{index}/expires_on",
                        value=lot.get("expires_on"),
                    )
                )
    suppliers = item.get("upstream_suppliers")
    if isinstance(suppliers, list):
        shares = [number(s.get("share_percent")) for s in suppliers if isinstance(s, dict)]
        materials = {s.get("material") for s in suppliers if isinstance(s, dict)}
        total = sum(s for s in shares if s is not None)
        if len(materials) == 1 and total > 100.0 + 1e-9:
            out.append(
                emit(
                    "SQM-E018",
                    f"upstream shares for one material add up to {total:g} %",
                    f"{at}/upstream_suppliers",
                    value=total,
                )
            )
        for index, supplier in enumerate(suppliers):
            if isinstance(supplier, dict) and isinstance(supplier.get("organization"), dict):
                check_party(
                    supplier["organization"], f"{at}/upstream_suppliers/{index}/organization", out
                )


def check_carbon(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    _unit_of_kind(
        item.get("declared_unit"),
        ("mass", "volume", "count", "area", "energy", "length"),
        at,
        "/declared_unit",
        "declared unit",
        out,
    )
    check_country(item.get("geography_country"), f"{at}/geography_country", out)
    fossil, total = (
        number(item.get("fossil_ghg_emissions")),
        number(item.get("pcf_excluding_biogenic")),
    )
    if (
        fossil is not None
        and total is not None
        and fossil > total * (1 + RELATIVE_TOLERANCE) + 1e-9
    ):
        out.append(
            emit(
                "SQM-E018",
                f"fossil emissions {fossil:g} exceed the total footprint {total:g}",
                f"{at}/fossil_ghg_emissions",
                value=fossil,
            )
        )


def check_energy(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    quantity = item.get("energy_consumed")
    if isinstance(quantity, dict):
        _unit_of_kind(
            quantity.get("unit"), ("energy",), at, "/energy_consumed/unit", "energy consumed", out
        )


def check_water(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    for name in ("water_withdrawal", "water_consumption"):
        quantity = item.get(name)
        if isinstance(quantity, dict):
            _unit_of_kind(
                quantity.get("unit"),
                ("volume", "mass"),
                at,
                f"/{name}/unit",
                name.replace("_", " "),
                out,
            )
    withdrawal, consumption = item.get("water_withdrawal"), item.get("water_consumption")
    if (
        isinstance(withdrawal, dict)
        and isinstance(consumption, dict)
        and withdrawal.get("unit") == consumption.get("unit")
    ):
        w, c = number(withdrawal.get("value")), number(consumption.get("value"))
        if w is not None and c is not None and c > w:
            out.append(
                emit(
                    "SQM-E018",
                    f"water consumption {c:g} exceeds withdrawal {w:g}",
                    f"{at}/water_consumption/value",
                    value=c,
                )
            )


def check_recycled(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    total = number(item.get("recycled_content_percent"))
    parts = [number(item.get(k)) for k in ("pre_consumer_percent", "post_consumer_percent")]
    share = sum(p for p in parts if p is not None)
    if total is not None and any(p is not None for p in parts) and share > total + 0.05:
        out.append(
            emit(
                "SQM-E018",
                f"pre- and post-consumer shares add up to {share:g} %, above the recycled content {total:g} %",
                f"{at}/recycled_content_percent",
                value=total,
            )
        )


_METRIC_KINDS = {
    "otif_percent": ("dimensionless",),
    "on_time_percent": ("dimensionless",),
    "in_full_percent": ("dimensionless",),
    "first_pass_yield": ("dimensionless",),
    "ppm": ("dimensionless",),
    "cpk": ("dimensionless",),
    "lead_time_median": ("time",),
    "lead_time_p95": ("time",),
    "response_time": ("time",),
    "containment_time": ("time",),
}
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
}


def check_service_level(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    indicator, objective = item.get("indicator"), item.get("objective")
    if not isinstance(objective, dict):
        return
    metric = indicator.get("metric") if isinstance(indicator, dict) else None
    if isinstance(metric, str) and metric in _METRIC_KINDS:
        _unit_of_kind(
            objective.get("unit"),
            _METRIC_KINDS[metric],
            at,
            "/objective/unit",
            f"an objective on {metric}",
            out,
        )
    operator, target, attainment = (
        objective.get("operator"),
        number(objective.get("target_value")),
        number(item.get("attainment")),
    )
    status = item.get("attainment_status")
    if (
        isinstance(operator, str)
        and operator in _OPERATORS
        and target is not None
        and attainment is not None
    ):
        met = _OPERATORS[operator](attainment, target)
        if met and status == "breached":
            out.append(
                emit(
                    "SQM-E019",
                    f"attainment {attainment:g} meets the objective {operator} {target:g} but the status is breached",
                    f"{at}/attainment_status",
                    value=status,
                )
            )
        if not met and status in ("met", "at_risk"):
            out.append(
                emit(
                    "SQM-E019",
                    f"attainment {attainment:g} does not meet the objective {operator} {target:g} but the status is {status}",
                    f"{at}/attainment_status",
                    value=status,
                )
            )


def check_certification(item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out) -> None:
    for party in ("certification_body",):
        if isinstance(item.get(party), dict):
            check_party(item[party], f"{at}/{party}", out)
    issued, valid_from, valid_until = (
        day(item.get("issued_on")),
        day(item.get("valid_from")),
        day(item.get("valid_until")),
    )
    for name, value in (("issued_on", issued), ("valid_from", valid_from)):
        if value and valid_until and value > valid_until:
            out.append(
                emit(
                    "SQM-E012",
                    f"{name} {value} is after valid_until {valid_until}",
                    f"{at}/{name}",
                    value=str(value),
                )
            )
    as_of = timestamp(item.get("as_of"))
    reference = as_of.date() if as_of else None
    status = item.get("status")
    if reference and valid_until:
        if status == "active" and valid_until < reference:
            out.append(
                emit(
                    "SQM-E012",
                    f"status is active but the certificate expired on {valid_until} (as of {reference})",
                    f"{at}/status",
                    value=status,
                )
            )
        if status == "active" and (valid_from or issued) and (valid_from or issued) > reference:  # type: ignore[operator]
            out.append(
                emit(
                    "SQM-E012",
                    f"status is active but validity only starts on {valid_from or issued}",
                    f"{at}/status",
                    value=status,
                )
            )
        if status == "expired" and valid_until >= reference:
            out.append(
                emit(
                    "SQM-E012",
                    f"status is expired but the certificate is valid until {valid_until}",
                    f"{at}/status",
                    value=status,
                )
            )
    last, due = day(item.get("last_audit_on")), day(item.get("next_audit_due"))
    if last and due and due <= last:
        out.append(
            emit(
                "SQM-E011",
                "next_audit_due is not after last_audit_on",
                f"{at}/next_audit_due",
                value=item.get("next_audit_due"),
            )
        )


SECTION_CHECKS: dict[str, Check] = {
    "sites": check_site,
    "products": check_product,
    "characteristics": check_characteristic,
    "capability_records": check_capability,
    "defect_rate_records": check_defects,
    "delivery_records": check_delivery,
    "lead_time_records": check_lead_time,
    "traceability_records": check_traceability,
    "carbon_footprint_records": check_carbon,
    "energy_records": check_energy,
    "water_records": check_water,
    "recycled_content_records": check_recycled,
    "service_level_records": check_service_level,
    "certification_records": check_certification,
}
DECLARATIONS = frozenset({"sites", "products", "characteristics"})


def item_findings(
    section: str, item: Mapping[str, Any], at: str, ctx: FeedContext, out: Out
) -> None:
    """Append every semantic finding for one item of a section."""
    check = SECTION_CHECKS.get(section)
    if check is None:
        return
    if section not in DECLARATIONS:
        check_times(item, at, ctx, out)
        assurance = item.get("assurance")
        if isinstance(assurance, dict) and isinstance(assurance.get("assurer"), dict):
            _parties(item, at, out)
    check(item, at, ctx, out)
