"""Layer 3, semantics: what one record must satisfy that the schema cannot say.

Each check reads one item (and, for capability, the declared characteristic it refers to) and
yields findings. Values the structure layer already rejects are skipped, not reported twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pycountry
from stdnum import ean, lei

from sqm.schema import units
from sqm.validator.context import CharacteristicSpec, FeedContext, day, integer, number, timestamp
from sqm.validator.findings import Finding
from sqm.validator.rules import emit

# Clocks differ; a timestamp this far ahead of ours is not yet "in the future".
CLOCK_SKEW = timedelta(minutes=5)
# Published indices are rounded (Cpk to 2 decimals, sigma to 2 significant digits).
RELATIVE_TOLERANCE = 0.05
ABSOLUTE_TOLERANCE = 0.015

Check = Callable[[Mapping[str, Any], str, FeedContext], Iterator[Finding]]


def _kind(unit: Any) -> str | None:
    entry = units().get(unit) if isinstance(unit, str) else None
    return entry["quantity_kind"] if entry else None


def _unit_of_kind(unit: Any, kinds: tuple[str, ...], pointer: str, what: str) -> Iterator[Finding]:
    kind = _kind(unit)
    if kind is not None and kind not in kinds:
        yield emit(
            "SQM-E001",
            f"{what} in {unit} ({units()[unit]['name']}, a {kind} unit); expected a "
            f"{' or '.join(kinds)} unit",
            pointer,
            value=unit,
        )


def _close(claimed: float, computed: float) -> bool:
    return abs(claimed - computed) <= max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(computed))


# --- common to every record --------------------------------------------------------------------


def check_times(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    """Period order, nothing in the future, as-of and next update in order."""
    horizon = ctx.now + CLOCK_SKEW
    period = item.get("period")
    start = end = None
    if isinstance(period, dict):
        start, end = timestamp(period.get("start")), timestamp(period.get("end"))
        if start and end and start >= end:
            yield emit(
                "SQM-E009",
                "the period ends before (or when) it starts",
                f"{at}/period/end",
                value=period.get("end"),
            )
        if end and end > horizon:
            yield emit(
                "SQM-E010",
                "the period ends in the future",
                f"{at}/period/end",
                value=period.get("end"),
            )
    as_of = timestamp(item.get("as_of"))
    if as_of and as_of > horizon:
        yield emit("SQM-E010", "as_of lies in the future", f"{at}/as_of", value=item.get("as_of"))
    if as_of and start and as_of < start:
        yield emit(
            "SQM-E011",
            "as_of precedes the start of the period it reports",
            f"{at}/as_of",
            value=item.get("as_of"),
        )
    due = timestamp(item.get("next_update_due"))
    if as_of and due and due <= as_of:
        yield emit(
            "SQM-E011",
            "next_update_due is not after as_of",
            f"{at}/next_update_due",
            value=item.get("next_update_due"),
        )


def check_header(header: Mapping[str, Any], ctx: FeedContext) -> Iterator[Finding]:
    """The header's own times and its supplier's identifiers."""
    yield from check_times({"period": header.get("period")}, "/header", ctx)
    issued = timestamp(header.get("issued_at"))
    if issued and issued > ctx.now + CLOCK_SKEW:
        yield emit(
            "SQM-E010",
            "the feed is issued in the future",
            "/header/issued_at",
            value=header.get("issued_at"),
        )
    supplier = header.get("supplier")
    if isinstance(supplier, dict):
        yield from check_party(supplier, "/header/supplier")


# --- identifiers and codes ---------------------------------------------------------------------


def check_identifiers(values: Any, at: str) -> Iterator[Finding]:
    """Check digits of LEIs (ISO 17442) and GLNs/GTINs (GS1 mod 10)."""
    if not isinstance(values, list):
        return
    for index, identifier in enumerate(values):
        if not isinstance(identifier, dict):
            continue
        scheme, code = identifier.get("scheme"), identifier.get("code")
        if not isinstance(code, str):
            continue
        where = f"{at}/{index}/code"
        if scheme == "LEI" and len(code) == 20 and not lei.is_valid(code):
            yield emit(
                "SQM-E015", f"LEI {code} fails its ISO 7064 mod 97-10 check", where, value=code
            )
        if scheme in ("GLN", "GTIN") and code.isdigit() and not ean.is_valid(code):
            yield emit("SQM-E016", f"{scheme} {code} fails its GS1 check digit", where, value=code)


def check_country(value: Any, at: str) -> Iterator[Finding]:
    """ISO 3166-1 alpha-2 membership (the schema checks only the shape)."""
    shaped = isinstance(value, str) and len(value) == 2 and value.isupper()
    if shaped and pycountry.countries.get(alpha_2=value) is None:
        yield emit(
            "SQM-E013", f"{value} is not an assigned ISO 3166-1 alpha-2 code", at, value=value
        )


def check_party(party: Mapping[str, Any], at: str) -> Iterator[Finding]:
    """An organisation's identifiers and country."""
    yield from check_identifiers(party.get("identifiers"), f"{at}/identifiers")
    yield from check_country(party.get("country"), f"{at}/country")


def _parties(item: Mapping[str, Any], at: str) -> Iterator[Finding]:
    assurance = item.get("assurance")
    if isinstance(assurance, dict) and isinstance(assurance.get("assurer"), dict):
        yield from check_party(assurance["assurer"], f"{at}/assurance/assurer")


# --- declarations -------------------------------------------------------------------------------


def check_site(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    yield from check_identifiers(item.get("identifiers"), f"{at}/identifiers")
    address = item.get("address")
    if isinstance(address, dict):
        yield from check_country(address.get("country"), f"{at}/address/country")


def check_product(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    yield from check_identifiers(item.get("classifications"), f"{at}/classifications")


def check_characteristic(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    lower, upper = number(item.get("lower_spec_limit")), number(item.get("upper_spec_limit"))
    if lower is not None and upper is not None:
        if lower >= upper:
            yield emit(
                "SQM-E002",
                f"lower_spec_limit {lower:g} is not below upper_spec_limit {upper:g}",
                f"{at}/lower_spec_limit",
                value=item.get("lower_spec_limit"),
            )
            return
        for name in ("nominal", "target"):
            value = number(item.get(name))
            if value is not None and not lower <= value <= upper:
                yield emit(
                    "SQM-E021",
                    f"{name} {value:g} lies outside {lower:g}..{upper:g}",
                    f"{at}/{name}",
                    value=value,
                )


# --- metric records -----------------------------------------------------------------------------


def spec_of(item: Mapping[str, Any], ctx: FeedContext) -> CharacteristicSpec | None:
    ref = item.get("characteristic")
    return ctx.characteristics.get(ref) if isinstance(ref, str) else None


def check_capability(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    """Index ordering, one-sided specs, consistency with limits/mean/sigma, subgroup counts."""
    cp, cpk, pp, ppk = (number(item.get(k)) for k in ("cp", "cpk", "pp", "ppk"))
    if cp is not None and cpk is not None and cpk > cp + 1e-9:
        yield emit("SQM-E003", f"Cpk {cpk:g} is above Cp {cp:g}", f"{at}/cpk", value=cpk)
    if pp is not None and ppk is not None and ppk > pp + 1e-9:
        yield emit("SQM-E003", f"Ppk {ppk:g} is above Pp {pp:g}", f"{at}/ppk", value=ppk)
    n, size, count = (
        integer(item.get(k)) for k in ("sample_size", "subgroup_size", "subgroup_count")
    )
    if n and size and count and n != size * count:
        yield emit(
            "SQM-E020",
            f"sample_size {n} is not subgroup_size {size} x subgroup_count {count} = {size * count}",
            f"{at}/sample_size",
            value=n,
        )
    spec = spec_of(item, ctx)
    if spec is None:
        return
    if spec.lower is None or spec.upper is None:
        for name, value in (("cp", cp), ("pp", pp)):
            if value is not None:
                yield emit(
                    "SQM-E005",
                    f"{name} needs both specification limits; {item.get('characteristic')} has one",
                    f"{at}/{name}",
                    value=value,
                )
    mean = number(item.get("process_mean"))
    for sigma_name, spread_name, index_name, spread, index in (
        ("sigma_within", "cp", "cpk", cp, cpk),
        ("sigma_overall", "pp", "ppk", pp, ppk),
    ):
        sigma = number(item.get(sigma_name))
        if sigma is None or sigma <= 0:
            continue
        if spread is not None and spec.lower is not None and spec.upper is not None:
            expected = (spec.upper - spec.lower) / (6 * sigma)
            if not _close(spread, expected):
                yield emit(
                    "SQM-E004",
                    f"{spread_name} {spread:g} but the limits and {sigma_name} {sigma:g} give {expected:.2f}",
                    f"{at}/{spread_name}",
                    value=spread,
                )
        if (
            index is not None
            and mean is not None
            and (spec.lower is not None or spec.upper is not None)
        ):
            sides = [
                s
                for s in (
                    (spec.upper - mean) if spec.upper is not None else None,
                    (mean - spec.lower) if spec.lower is not None else None,
                )
                if s is not None
            ]
            expected = min(sides) / (3 * sigma)
            if not _close(index, expected):
                yield emit(
                    "SQM-E004",
                    f"{index_name} {index:g} but the limits, process_mean {mean:g} and {sigma_name} {sigma:g} give {expected:.2f}",
                    f"{at}/{index_name}",
                    value=index,
                )


def check_defects(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    inspected, defective = (
        integer(item.get("inspected_count")),
        integer(item.get("defective_count")),
    )
    defects, opportunities = (
        integer(item.get("defect_count")),
        integer(item.get("opportunities_per_unit")),
    )
    if inspected is not None and defective is not None and defective > inspected:
        yield emit(
            "SQM-E006",
            f"defective_count {defective} exceeds inspected_count {inspected}",
            f"{at}/defective_count",
            value=defective,
        )
        return
    received, rejected = integer(item.get("lots_received")), integer(item.get("lots_rejected"))
    if received is not None and rejected is not None and rejected > received:
        yield emit(
            "SQM-E006",
            f"lots_rejected {rejected} exceeds lots_received {received}",
            f"{at}/lots_rejected",
            value=rejected,
        )
    categories = item.get("defect_categories")
    if isinstance(categories, list):
        total = sum(
            c for c in (integer(x.get("count")) for x in categories if isinstance(x, dict)) if c
        )
        ceiling = defects if defects is not None else defective
        if ceiling is not None and total > ceiling and item.get("counting_rule") != "per_defect":
            yield emit(
                "SQM-E006",
                f"defect categories add up to {total}, more than the {ceiling} counted",
                f"{at}/defect_categories",
                value=total,
            )
    ppm = number(item.get("ppm"))
    if ppm is not None and inspected and defective is not None:
        expected = defective / inspected * 1e6
        if abs(ppm - expected) > max(0.5, 0.005 * expected):
            yield emit(
                "SQM-E007",
                f"ppm {ppm:g} but {defective} / {inspected} x 10^6 = {expected:.2f}",
                f"{at}/ppm",
                value=ppm,
            )
    dpmo = number(item.get("dpmo"))
    if dpmo is not None and inspected and defects is not None and opportunities:
        expected = defects / (inspected * opportunities) * 1e6
        if abs(dpmo - expected) > max(0.5, 0.005 * expected):
            yield emit(
                "SQM-E007",
                f"dpmo {dpmo:g} but {defects} / ({inspected} x {opportunities}) x 10^6 = {expected:.2f}",
                f"{at}/dpmo",
                value=dpmo,
            )
    fpy = number(item.get("first_pass_yield"))
    if (
        fpy is not None
        and inspected
        and defective is not None
        and item.get("counting_rule") == "per_unit"
    ):
        passed_share = 100.0 * (inspected - defective) / inspected
        if fpy > passed_share + 0.05:
            yield emit(
                "SQM-E007",
                f"first_pass_yield {fpy:g} % but {defective} of {inspected} units failed (at most {passed_share:.2f} %)",
                f"{at}/first_pass_yield",
                value=fpy,
            )


def check_delivery(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    otif = number(item.get("otif_percent"))
    for name in ("on_time_percent", "in_full_percent"):
        part = number(item.get(name))
        if otif is not None and part is not None and otif > part + 1e-9:
            yield emit(
                "SQM-E008",
                f"otif_percent {otif:g} exceeds {name} {part:g}",
                f"{at}/otif_percent",
                value=otif,
            )


def check_lead_time(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    quoted = item.get("quoted_lead_time")
    if isinstance(quoted, dict):
        yield from _unit_of_kind(
            quoted.get("unit"), ("time",), f"{at}/quoted_lead_time/unit", "quoted lead time"
        )
    actual = item.get("actual_lead_time")
    if not isinstance(actual, dict):
        return
    yield from _unit_of_kind(
        actual.get("unit"), ("time",), f"{at}/actual_lead_time/unit", "lead time distribution"
    )
    ordered = [(k, number(actual.get(k))) for k in ("minimum", "median", "p95", "maximum")]
    present = [(k, v) for k, v in ordered if v is not None]
    for (low_name, low), (high_name, high) in pairwise(present):
        if low is not None and high is not None and low > high:
            yield emit(
                "SQM-E017",
                f"{low_name} {low:g} is above {high_name} {high:g}",
                f"{at}/actual_lead_time/{high_name}",
                value=high,
            )
    mean, low_v, high_v = (
        number(actual.get("mean")),
        number(actual.get("minimum")),
        number(actual.get("maximum")),
    )
    if mean is not None and (
        (low_v is not None and mean < low_v) or (high_v is not None and mean > high_v)
    ):
        yield emit(
            "SQM-E017",
            f"mean {mean:g} lies outside minimum..maximum",
            f"{at}/actual_lead_time/mean",
            value=mean,
        )


def check_traceability(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    yield from check_country(item.get("country_of_origin"), f"{at}/country_of_origin")
    lots = item.get("lots")
    if isinstance(lots, list):
        for index, lot in enumerate(lots):
            if not isinstance(lot, dict):
                continue
            yield from check_country(
                lot.get("country_of_origin"), f"{at}/lots/{index}/country_of_origin"
            )
            quantity = lot.get("quantity")
            if isinstance(quantity, dict):
                yield from _unit_of_kind(
                    quantity.get("unit"),
                    ("mass", "volume", "count", "length", "area"),
                    f"{at}/lots/{index}/quantity/unit",
                    "lot quantity",
                )
            produced, expires = day(lot.get("produced_on")), day(lot.get("expires_on"))
            if produced and expires and expires < produced:
                yield emit(
                    "SQM-E011",
                    "the lot expires before it was produced",
                    f"{at}/lots/{index}/expires_on",
                    value=lot.get("expires_on"),
                )
    suppliers = item.get("upstream_suppliers")
    if isinstance(suppliers, list):
        shares = [number(s.get("share_percent")) for s in suppliers if isinstance(s, dict)]
        materials = {s.get("material") for s in suppliers if isinstance(s, dict)}
        total = sum(s for s in shares if s is not None)
        if len(materials) == 1 and total > 100.0 + 1e-9:
            yield emit(
                "SQM-E018",
                f"upstream shares for one material add up to {total:g} %",
                f"{at}/upstream_suppliers",
                value=total,
            )
        for index, supplier in enumerate(suppliers):
            if isinstance(supplier, dict) and isinstance(supplier.get("organization"), dict):
                yield from check_party(
                    supplier["organization"], f"{at}/upstream_suppliers/{index}/organization"
                )


def check_carbon(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    yield from _unit_of_kind(
        item.get("declared_unit"),
        ("mass", "volume", "count", "area", "energy", "length"),
        f"{at}/declared_unit",
        "declared unit",
    )
    yield from check_country(item.get("geography_country"), f"{at}/geography_country")
    fossil, total = (
        number(item.get("fossil_ghg_emissions")),
        number(item.get("pcf_excluding_biogenic")),
    )
    if (
        fossil is not None
        and total is not None
        and fossil > total * (1 + RELATIVE_TOLERANCE) + 1e-9
    ):
        yield emit(
            "SQM-E018",
            f"fossil emissions {fossil:g} exceed the total footprint {total:g}",
            f"{at}/fossil_ghg_emissions",
            value=fossil,
        )


def check_energy(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    quantity = item.get("energy_consumed")
    if isinstance(quantity, dict):
        yield from _unit_of_kind(
            quantity.get("unit"), ("energy",), f"{at}/energy_consumed/unit", "energy consumed"
        )


def check_water(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    for name in ("water_withdrawal", "water_consumption"):
        quantity = item.get(name)
        if isinstance(quantity, dict):
            yield from _unit_of_kind(
                quantity.get("unit"),
                ("volume", "mass"),
                f"{at}/{name}/unit",
                name.replace("_", " "),
            )
    withdrawal, consumption = item.get("water_withdrawal"), item.get("water_consumption")
    if (
        isinstance(withdrawal, dict)
        and isinstance(consumption, dict)
        and withdrawal.get("unit") == consumption.get("unit")
    ):
        w, c = number(withdrawal.get("value")), number(consumption.get("value"))
        if w is not None and c is not None and c > w:
            yield emit(
                "SQM-E018",
                f"water consumption {c:g} exceeds withdrawal {w:g}",
                f"{at}/water_consumption/value",
                value=c,
            )


def check_recycled(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    total = number(item.get("recycled_content_percent"))
    parts = [number(item.get(k)) for k in ("pre_consumer_percent", "post_consumer_percent")]
    share = sum(p for p in parts if p is not None)
    if total is not None and any(p is not None for p in parts) and share > total + 0.05:
        yield emit(
            "SQM-E018",
            f"pre- and post-consumer shares add up to {share:g} %, above the recycled content {total:g} %",
            f"{at}/recycled_content_percent",
            value=total,
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


def check_service_level(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    indicator, objective = item.get("indicator"), item.get("objective")
    if not isinstance(objective, dict):
        return
    metric = indicator.get("metric") if isinstance(indicator, dict) else None
    if isinstance(metric, str) and metric in _METRIC_KINDS:
        yield from _unit_of_kind(
            objective.get("unit"),
            _METRIC_KINDS[metric],
            f"{at}/objective/unit",
            f"an objective on {metric}",
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
            yield emit(
                "SQM-E019",
                f"attainment {attainment:g} meets the objective {operator} {target:g} but the status is breached",
                f"{at}/attainment_status",
                value=status,
            )
        if not met and status in ("met", "at_risk"):
            yield emit(
                "SQM-E019",
                f"attainment {attainment:g} does not meet the objective {operator} {target:g} but the status is {status}",
                f"{at}/attainment_status",
                value=status,
            )


def check_certification(item: Mapping[str, Any], at: str, ctx: FeedContext) -> Iterator[Finding]:
    for party in ("certification_body",):
        if isinstance(item.get(party), dict):
            yield from check_party(item[party], f"{at}/{party}")
    issued, valid_from, valid_until = (
        day(item.get("issued_on")),
        day(item.get("valid_from")),
        day(item.get("valid_until")),
    )
    for name, value in (("issued_on", issued), ("valid_from", valid_from)):
        if value and valid_until and value > valid_until:
            yield emit(
                "SQM-E012",
                f"{name} {value} is after valid_until {valid_until}",
                f"{at}/{name}",
                value=str(value),
            )
    as_of = timestamp(item.get("as_of"))
    reference = as_of.date() if as_of else None
    status = item.get("status")
    if reference and valid_until:
        if status == "active" and valid_until < reference:
            yield emit(
                "SQM-E012",
                f"status is active but the certificate expired on {valid_until} (as of {reference})",
                f"{at}/status",
                value=status,
            )
        if status == "active" and (valid_from or issued) and (valid_from or issued) > reference:  # type: ignore[operator]
            yield emit(
                "SQM-E012",
                f"status is active but validity only starts on {valid_from or issued}",
                f"{at}/status",
                value=status,
            )
        if status == "expired" and valid_until >= reference:
            yield emit(
                "SQM-E012",
                f"status is expired but the certificate is valid until {valid_until}",
                f"{at}/status",
                value=status,
            )
    last, due = day(item.get("last_audit_on")), day(item.get("next_audit_due"))
    if last and due and due <= last:
        yield emit(
            "SQM-E011",
            "next_audit_due is not after last_audit_on",
            f"{at}/next_audit_due",
            value=item.get("next_audit_due"),
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
    section: str, item: Mapping[str, Any], at: str, ctx: FeedContext
) -> Iterator[Finding]:
    """Every semantic finding for one item of a section."""
    check = SECTION_CHECKS.get(section)
    if check is None:
        return
    if section not in DECLARATIONS:
        yield from check_times(item, at, ctx)
        yield from _parties(item, at)
    yield from check(item, at, ctx)
