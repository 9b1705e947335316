"""Layer 4, cross-record: ids, references, duplicates, the feed sequence and profile-wide rules.

State is compact so that a million streamed records stay within memory: ids and duplicate keys
are 8-byte digests; only declarations (sites, products, characteristics) are kept as strings.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqm.validator.compact import DigestSet
from sqm.validator.context import CharacteristicSpec, FeedContext, day, integer, number, timestamp
from sqm.validator.findings import Finding
from sqm.validator.rules import emit

# References to items not declared yet are remembered up to this many; beyond it they are
# reported at once, so that a feed that declares nothing cannot exhaust memory.
MAX_PENDING = 100_000
SPECIAL_CLASSES = ("critical", "significant")
DECLARATION_KIND = {"sites": "site", "products": "product", "characteristics": "characteristic"}
KIND_SECTION = {kind: section for section, kind in DECLARATION_KIND.items()}


def _interned(value: Any) -> str | None:
    # Many characteristics share a product and unit: one string each, not one per item.
    return sys.intern(value) if isinstance(value, str) else None


@dataclass
class CrossRecordState:
    """What the cross-record layer remembers while a feed streams past."""

    ctx: FeedContext
    ids: DigestSet = field(default_factory=DigestSet)
    subjects: DigestSet = field(default_factory=DigestSet)
    declared: dict[str, DigestSet] = field(
        default_factory=lambda: {k: DigestSet() for k in KIND_SECTION}
    )
    pending: list[tuple[str, str, str]] = field(default_factory=list)
    special: dict[str, str] = field(default_factory=dict)  # characteristic id -> its pointer
    ppap_complete: DigestSet = field(default_factory=DigestSet)
    iatf_active: bool = False
    iatf_seen: bool = False
    # Facts that structurally broken items leave unknown: no finding may rest on them.
    indeterminate: set[str] = field(default_factory=set)
    iatf_indeterminate: bool = False

    def header(self, header: Mapping[str, Any]) -> Iterator[Finding]:
        sequence = integer(header.get("sequence"))
        previous = header.get("previous_feed")
        if sequence is not None and sequence > 0 and previous is None:
            yield emit(
                "SQM-R004",
                f"feed {sequence} does not name its predecessor in previous_feed",
                "/header",
            )
        if isinstance(previous, dict) and sequence is not None:
            before = integer(previous.get("sequence"))
            if before is not None and before != sequence - 1:
                yield emit(
                    "SQM-R004",
                    f"previous_feed.sequence is {before}; feed {sequence} must follow {sequence - 1}",
                    "/header/previous_feed/sequence",
                    value=before,
                )

    def item(
        self, section: str, item: Mapping[str, Any], at: str, *, sound: bool = True
    ) -> Iterator[Finding]:
        """Remember the item and check it against the rest of the feed.

        An item with structural errors (``sound=False``) is only registered: its id and what it
        declares, so that other items' references to it do not cascade into more findings.
        """
        identifier = item.get("id")
        if isinstance(identifier, str) and not self.ids.add(identifier):
            yield emit(
                "SQM-R001",
                f"id {identifier!r} is used by an earlier item",
                f"{at}/id",
                value=identifier,
            )
        if section in DECLARATION_KIND and isinstance(identifier, str):
            self.declared[DECLARATION_KIND[section]].add(identifier)
        if section == "characteristics" and isinstance(identifier, str):
            self._declare_characteristic(identifier, item, at)
        if not sound:
            if section == "capability_records" and isinstance(item.get("characteristic"), str):
                self.indeterminate.add(item["characteristic"])
            if section == "certification_records" and item.get("scheme") == "IATF_16949":
                self.iatf_indeterminate = True
            return
        yield from self._references(section, item, at)
        yield from self._duplicates(section, item, at)
        if section == "capability_records":
            yield from self._capability(item, at)
        if section == "certification_records":
            self._certificate(item)

    def _declare_characteristic(self, identifier: str, item: Mapping[str, Any], at: str) -> None:
        if self.ctx.automotive and item.get("special_characteristic_class") in SPECIAL_CLASSES:
            self.special[identifier] = at
        lower, upper = number(item.get("lower_spec_limit")), number(item.get("upper_spec_limit"))
        if lower is not None and upper is not None and lower >= upper:
            return  # E002 reports the limits; checks that would rest on them stay silent
        self.ctx.characteristics[identifier] = CharacteristicSpec(
            product=_interned(item.get("product")),
            unit=_interned(item.get("unit")),
            lower=lower,
            upper=upper,
            special_class=_interned(item.get("special_characteristic_class")),
        )

    def _refer(self, kind: str, value: Any, at: str) -> Iterator[Finding]:
        if not isinstance(value, str) or value in self.declared[kind]:
            return
        if len(self.pending) < MAX_PENDING:
            self.pending.append((kind, value, at))
        else:
            yield self._unresolved(kind, value, at, streamed=True)

    def _unresolved(self, kind: str, value: str, at: str, streamed: bool = False) -> Finding:
        hint = None
        if streamed:
            hint = f"Declare {KIND_SECTION[kind]} before the records that use them."
        return emit(
            "SQM-R002",
            f"{kind} {value!r} is not declared in {KIND_SECTION[kind]}",
            at,
            value=value,
            hint=hint,
        )

    def _references(self, section: str, item: Mapping[str, Any], at: str) -> Iterator[Finding]:
        if section != "sites":
            yield from self._refer("site", item.get("site"), f"{at}/site")
        if section not in ("products",):
            yield from self._refer("product", item.get("product"), f"{at}/product")
        if section == "capability_records":
            yield from self._refer(
                "characteristic", item.get("characteristic"), f"{at}/characteristic"
            )
        if section == "products" and isinstance(item.get("manufactured_at"), list):
            for index, site in enumerate(item["manufactured_at"]):
                yield from self._refer("site", site, f"{at}/manufactured_at/{index}")
        if section == "certification_records" and isinstance(item.get("covered_sites"), list):
            for index, covered in enumerate(item["covered_sites"]):
                if isinstance(covered, dict):
                    yield from self._refer(
                        "site", covered.get("site"), f"{at}/covered_sites/{index}/site"
                    )
        if section == "traceability_records" and isinstance(item.get("lots"), list):
            for index, lot in enumerate(item["lots"]):
                if isinstance(lot, dict):
                    yield from self._refer("site", lot.get("site"), f"{at}/lots/{index}/site")

    def _duplicates(self, section: str, item: Mapping[str, Any], at: str) -> Iterator[Finding]:
        period = item.get("period")
        if (
            section in DECLARATION_KIND
            or section == "certification_records"
            or not isinstance(period, dict)
        ):
            if section == "certification_records":
                key = (section, item.get("scheme"), item.get("certificate_number"))
                if not self.subjects.add(key):
                    yield emit(
                        "SQM-R003",
                        f"certificate {item.get('certificate_number')} of {item.get('scheme')} is listed twice",
                        at,
                    )
            return
        indicator = item.get("indicator")
        parts = [
            section,
            item.get("site"),
            item.get("product"),
            item.get("characteristic"),
            item.get("detection_point"),
            item.get("lead_time_definition"),
            item.get("date_basis"),
            indicator.get("name") if isinstance(indicator, dict) else None,
            item.get("material"),
            period.get("start"),
            period.get("end"),
        ]
        if not self.subjects.add(tuple(parts)):
            yield emit("SQM-R003", "another record already covers the same subject and period", at)

    def _capability(self, item: Mapping[str, Any], at: str) -> Iterator[Finding]:
        ref, product = item.get("characteristic"), item.get("product")
        spec = self.ctx.characteristics.get(ref) if isinstance(ref, str) else None
        if spec and spec.product and isinstance(product, str) and product != spec.product:
            yield emit(
                "SQM-R005",
                f"{ref} belongs to {spec.product}, the record names {product}",
                f"{at}/product",
                value=product,
            )
        n, groups = integer(item.get("sample_size")), integer(item.get("subgroup_count"))
        if (
            isinstance(ref, str)
            and number(item.get("ppk")) is not None
            and isinstance(item.get("normality_test"), dict)
            and n is not None
            and n >= 100
            and groups is not None
            and groups >= 25
        ):
            self.ppap_complete.add(ref)

    def _certificate(self, item: Mapping[str, Any]) -> None:
        if item.get("scheme") != "IATF_16949":
            return
        self.iatf_seen = True
        issued = timestamp(self.ctx.header.get("issued_at"))
        if issued is None:
            self.iatf_indeterminate = True
        until, start = (
            day(item.get("valid_until")),
            day(item.get("valid_from")) or day(item.get("issued_on")),
        )
        if issued and until and item.get("status") == "active":
            on = issued.date()
            if until >= on and (start is None or start <= on):
                self.iatf_active = True

    def finish(self) -> Iterator[Finding]:
        for kind, value, at in self.pending:
            if value not in self.declared[kind]:
                yield self._unresolved(kind, value, at)
        self.pending.clear()
        if self.ctx.automotive:
            for identifier, at in self.special.items():
                if identifier not in self.ppap_complete and identifier not in self.indeterminate:
                    yield emit(
                        "SQM-R006",
                        f"special characteristic {identifier!r} has no PPAP-complete capability record",
                        at,
                        value=identifier,
                    )
            if self.iatf_seen and not self.iatf_active and not self.iatf_indeterminate:
                yield emit(
                    "SQM-R007",
                    "no IATF 16949 certificate is active on the feed's issue date",
                    "/certification_records",
                )
