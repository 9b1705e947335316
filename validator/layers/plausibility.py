"""Layer 5, plausibility: numbers that are possible but not credible (anti-gaming).

Warnings, not errors: a buyer should look twice, the supplier should check. Each test states
the model it assumes (a normal process, Poisson-distributed defect counts) and fires only when
the data contradict it strongly.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

from sqm.validator import stats
from sqm.validator.compact import DigestSet, MaxMap
from sqm.validator.context import FeedContext, integer, number, timestamp
from sqm.validator.findings import Finding
from sqm.validator.layers.semantics import Template, instantiate, memoized
from sqm.validator.rules import emit

MIN_CREDIBLE_SAMPLE = 30
# A defect count this improbable under the capability's model is called implausible.
IMPLAUSIBLE = 1e-3
PRODUCED_AT = ("in_process", "final_inspection")
_DURATION = re.compile(
    r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def duration(text: Any) -> timedelta | None:
    """An ISO 8601 duration as a timedelta (months as 30 days, years as 365)."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        return None
    y, mo, w, d, h, mi, s = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=365 * y + 30 * mo + 7 * w + d, hours=h, minutes=mi, seconds=s)


def _subject(section: str, item: Mapping[str, Any]) -> str | None:
    fields = {
        "capability_records": ("site", "characteristic"),
        "defect_rate_records": ("site", "product", "detection_point", "counting_rule"),
        "delivery_records": ("site", "product", "date_basis"),
        "lead_time_records": ("site", "product", "lead_time_definition"),
    }.get(section)
    if fields is None:
        return None
    return section + "|" + "|".join(str(item.get(f, "")) for f in fields)


_COMPARED = {
    "capability_records": ("cpk", "ppk"),
    "defect_rate_records": ("ppm", "dpmo", "first_pass_yield"),
    "delivery_records": ("on_time_percent", "in_full_percent", "otif_percent"),
    "lead_time_records": ("median", "p95"),
}


def _metrics(section: str, item: Mapping[str, Any]) -> dict[str, float]:
    source = item.get("actual_lead_time") if section == "lead_time_records" else item
    if not isinstance(source, dict):
        return {}
    values = {name: number(source.get(name)) for name in _COMPARED.get(section, ())}
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class Baseline:
    """The previous feed reduced to each subject's headline metrics and period."""

    metrics: dict[str, tuple[str, dict[str, float]]] = field(default_factory=dict)

    def add(self, section: str, item: Mapping[str, Any]) -> None:
        subject = _subject(section, item)
        period = item.get("period")
        if subject is not None and isinstance(period, dict):
            self.metrics[subject] = (str(period.get("start")), _metrics(section, item))


def _jump(name: str, before: float, now: float) -> bool:
    if name in ("cpk", "ppk"):
        return abs(now - before) > 0.5 and abs(now - before) > 0.4 * max(abs(before), 0.1)
    if name in ("ppm", "dpmo"):
        low, high = sorted((before, now))
        return high >= 50 and high > 10 * max(low, 0.5)
    if name in ("median", "p95"):
        low, high = sorted((before, now))
        return low > 0 and high > 2 * low
    return abs(now - before) > 15  # percentages


# The values that, all equal, mark a capability record as a copy of another.
_SIGNATURE = (
    "characteristic",
    "site",
    "cp",
    "cpk",
    "pp",
    "ppk",
    "process_mean",
    "sigma_within",
    "sigma_overall",
    "sample_size",
)


class PlausibilityFacts(NamedTuple):
    """What one record contributes to the feed-wide plausibility checks (small, picklable)."""

    signature: int | None = None
    expected: tuple[int, float] | None = None
    # (hash of product and period, defective, inspected) of a produced-defects record
    observed: tuple[int, int, int] | None = None


_NO_FACTS = (None, None, None)


def _observed(item: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """(hash of product, period start and end; defective; inspected) of a produced-defects
    record."""
    period, product = item.get("period"), item.get("product")
    inspected, defective = (
        integer(item.get("inspected_count")),
        integer(item.get("defective_count")),
    )
    if (
        item.get("detection_point") in PRODUCED_AT
        and item.get("counting_rule") == "per_unit"
        and isinstance(product, str)
        and isinstance(period, dict)
        and inspected
        and defective is not None
    ):
        key = hash((product, str(period.get("start")), str(period.get("end"))))
        return key, defective, inspected
    return None


class _Observed:
    """Rows of four integers in arrays (a column turns into a list for a value an array cannot
    hold, such as a count beyond 64 bits)."""

    def __init__(self) -> None:
        self._columns: list[Any] = [array("Q") for _ in range(4)]

    def append(self, row: tuple[int, int, int, int]) -> None:
        key, *rest = row
        for column, value in enumerate((key & 0xFFFFFFFFFFFFFFFF, *rest)):
            try:
                self._columns[column].append(value)
            except OverflowError:
                self._columns[column] = list(self._columns[column])
                self._columns[column].append(value)

    def __iter__(self) -> Iterator[tuple[int, int, int, int]]:
        return zip(*self._columns, strict=True)

    def clear(self) -> None:
        self._columns = [array("Q") for _ in range(4)]


@dataclass
class PlausibilityState:
    """Per-product capability and defect summaries, signatures of values, and the baseline."""

    ctx: FeedContext
    signatures: DigestSet = field(default_factory=DigestSet)
    # (product, period start, period end) -> worst implied fraction, capability record index
    expected: MaxMap = field(default_factory=MaxMap)
    # The produced-defects records, compared with the expectations at the end: the key of
    # their product and period, their counts and their index, 32 bytes a record.
    observed: _Observed = field(default_factory=lambda: _Observed())

    def record(self, section: str, item: Mapping[str, Any], at: str, out: list[Finding]) -> None:
        """Checks of one record on its own (they need no other record, so they parallelise)."""
        self._stale(item, at, out)
        if section == "capability_records":
            self._capability(item, at, out)
        if self.ctx.baseline is not None:
            out.extend(self._against_baseline(section, item, at))

    def examine(self, section: str, item: Mapping[str, Any]) -> tuple[Any, ...]:
        """What this record contributes to the feed-wide checks (the fields of
        :class:`PlausibilityFacts`, as a plain tuple: cheaper to make and to pickle); changes
        nothing (so worker processes can run it)."""
        if section == "capability_records":
            ppk = item.get("ppk")
            ppk = ppk if type(ppk) is float else number(ppk)
            return (
                hash(tuple(map(item.get, _SIGNATURE))),
                self._expected(item, ppk if ppk is not None else number(item.get("cpk"))),
                None,
            )
        if section == "defect_rate_records":
            return (None, None, _observed(item))
        return _NO_FACTS

    def apply(self, facts: PlausibilityFacts, at: str) -> Iterator[Finding]:
        """Remember an examined record; report a copy of an earlier one."""
        section, index = at[1:].rsplit("/", 1)
        out: list[Finding] = []
        self.apply_into(facts, section, int(index), out)
        return iter(out)

    def apply_into(
        self, facts: Sequence[Any], section: str, index: int, out: list[Finding]
    ) -> None:
        """:meth:`apply` for record ``index`` of ``section``, appending the findings (with that
        record index) to ``out``. ``facts`` is a :class:`PlausibilityFacts` or a plain tuple."""
        signature, expected, observed = facts
        if signature is not None and not self.signatures.add_hash(signature):
            out.append(
                emit(
                    "SQM-P004",
                    "every value equals another record's for the same characteristic (copied data?)",
                    f"/{section}/{index}",
                    record=index,
                )
            )
        if expected is not None:
            key, fraction = expected
            self.expected.update_hash(key, fraction, index)
        if observed is not None:
            self.observed.append((*observed, index))

    def _stale(self, item: Mapping[str, Any], at: str, out: list[Finding]) -> None:
        due, as_of, interval = (
            item.get("next_update_due"),
            item.get("as_of"),
            item.get("update_interval"),
        )
        ctx = self.ctx
        if ctx.memo_now is ctx.now and (as_of is None or type(as_of) is str):
            try:
                found = ctx.memo[("stale", due, as_of, interval)]
            except (KeyError, TypeError):
                pass
            else:
                if found:
                    instantiate(found, at, out)
                return
        if as_of is None or type(as_of) is str:
            found = memoized(
                self.ctx, ("stale", due, as_of, interval), self._due, due, as_of, interval
            )
        else:  # the finding carries as_of: equal keys of other types (1, 1.0, True) must differ
            found = self._due(due, as_of, interval)
        if found:
            instantiate(found, at, out)

    def _due(self, due_v: Any, as_of_v: Any, interval_v: Any) -> tuple[Template, ...]:
        due = timestamp(due_v)
        if due is None:
            as_of, interval = timestamp(as_of_v), duration(interval_v)
            due = as_of + interval if as_of and interval else None
        if due is not None and due < self.ctx.now:
            message = f"the record was due for an update on {due.isoformat()}"
            return (("SQM-P006", message, "", as_of_v),)
        return ()

    def _capability(self, item: Mapping[str, Any], at: str, out: list[Finding]) -> None:
        cpk = item.get("cpk")
        cpk = cpk if type(cpk) is float else number(cpk)
        n = item.get("sample_size")
        if type(n) is not int:
            n = None
        if n is not None and n < MIN_CREDIBLE_SAMPLE:
            out.append(
                emit(
                    "SQM-P003",
                    f"capability from {n} measurements (fewer than {MIN_CREDIBLE_SAMPLE})",
                    f"{at}/sample_size",
                    value=n,
                )
            )
        claimed = number(item.get("cpk_lower_confidence_bound"))
        level = number(item.get("confidence_level")) or 0.95
        if claimed is not None and cpk is not None and n is not None and 0 < level < 1:
            supported = stats.cpk_lower_bound(cpk, n, level)
            if claimed > supported + 0.05:
                out.append(
                    emit(
                        "SQM-P003",
                        f"lower bound {claimed:g} claimed; Cpk {cpk:g} from n = {n} supports about {supported:.2f}",
                        f"{at}/cpk_lower_confidence_bound",
                        value=claimed,
                    )
                )
        for name in ("sigma_within", "sigma_overall"):
            sigma = item.get(name)
            if (sigma if type(sigma) is float else number(sigma)) == 0.0:
                out.append(
                    emit(
                        "SQM-P004",
                        f"{name} is exactly zero: no measured process varies not at all",
                        f"{at}/{name}",
                        value=0,
                    )
                )
        test = item.get("normality_test")
        if (
            item.get("distribution") == "normal"
            and isinstance(test, dict)
            and test.get("passed") is False
        ):
            out.append(
                emit(
                    "SQM-P007",
                    "indices computed under a normal model that the normality test rejected",
                    f"{at}/normality_test/passed",
                    value=False,
                )
            )
        if item.get("in_statistical_control") is False and cpk is not None:
            out.append(
                emit(
                    "SQM-P008",
                    "Cpk stated for a process out of statistical control",
                    f"{at}/cpk",
                    value=cpk,
                )
            )

    def _expected(self, item: Mapping[str, Any], index: float | None) -> tuple[int, float] | None:
        """(hash of product and period, nonconforming fraction the capability implies)."""
        get = item.get
        if get("distribution") != "normal":
            return None
        ref = get("characteristic")
        spec = self.ctx.characteristics.get(ref) if isinstance(ref, str) else None
        period = get("period")
        if spec is None or not isinstance(period, dict):
            return None
        product = get("product") or spec.product
        if not isinstance(product, str):
            return None
        mean, sigma = get("process_mean"), get("sigma_overall")
        mean = mean if type(mean) is float else number(mean)
        sigma = sigma if type(sigma) is float else number(sigma)
        if mean is not None and sigma and sigma > 0:
            fraction = stats.nonconforming_fraction(mean, sigma, spec.lower, spec.upper)
        elif index is not None:
            fraction = stats.fraction_from_index(index)
        else:
            return None
        return hash((product, str(period.get("start")), str(period.get("end")))), fraction

    def _against_baseline(
        self, section: str, item: Mapping[str, Any], at: str
    ) -> Iterator[Finding]:
        baseline = self.ctx.baseline
        subject = _subject(section, item)
        period = item.get("period")
        if not isinstance(baseline, Baseline) or subject is None or subject not in baseline.metrics:
            return
        before_start, before = baseline.metrics[subject]
        now_values = _metrics(section, item)
        same_period = isinstance(period, dict) and str(period.get("start")) == before_start
        if now_values and now_values == before and not same_period:
            yield emit(
                "SQM-P004",
                "every metric equals the previous feed's for a different period (copied data?)",
                at,
            )
            return
        for name, value in now_values.items():
            if name in before and _jump(name, before[name], value):
                yield emit(
                    "SQM-P005",
                    f"{name} moved from {before[name]:g} in the previous feed to {value:g}",
                    f"{at}/{'actual_lead_time/' if section == 'lead_time_records' else ''}{name}",
                    value=value,
                )

    def finish(self) -> Iterator[Finding]:
        for key, defective, inspected, index in self.observed:
            expected = self.expected.get_hash(key)
            if expected is None:
                continue
            at = f"/defect_rate_records/{index}"
            fraction, record = expected
            source = f"/capability_records/{record}"
            lam = fraction * inspected
            if lam >= 5 and stats.poisson_cdf(defective, lam) < IMPLAUSIBLE:
                yield emit(
                    "SQM-P001",
                    f"{defective} defective in {inspected} ({defective / inspected * 1e6:.1f} ppm), but the "
                    f"capability at {source} implies at least {fraction * 1e6:.1f} ppm (about {lam:.0f} parts)",
                    at,
                    value=defective,
                )
            elif defective >= 10 and stats.poisson_sf(defective, max(lam, 1e-12)) < IMPLAUSIBLE:
                yield emit(
                    "SQM-P002",
                    f"{defective / inspected * 1e6:.1f} ppm, while the declared capability implies about "
                    f"{fraction * 1e6:.2f} ppm",
                    at,
                    value=defective,
                )
        self.observed.clear()
