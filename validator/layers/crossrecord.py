"""Layer 4, cross-record: ids, references, duplicates, the feed sequence and profile-wide rules.

State is compact so that a million streamed records stay within memory: ids and duplicate keys
are 8-byte digests; only declarations (sites, products, characteristics) are kept as strings.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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


ACTIVE, SEEN, INDETERMINATE = "active", "seen", "indeterminate"


class CrossFacts(NamedTuple):
    """What one item contributes to the feed-wide checks (small, picklable)."""

    section: str
    id: str | None = None
    declares: str | None = None  # the kind of item it declares
    spec: CharacteristicSpec | None = None
    special: bool = False
    refs: tuple[tuple[str, str, str], ...] = ()  # (kind, id, pointer below the item)
    subject: int | None = None  # hash of what the record is about, for duplicates
    certificate: str | None = None  # the duplicate message for certificates
    ppap: str | None = None  # a characteristic this record gives a PPAP-complete study
    indeterminate: str | None = None  # a characteristic a broken record leaves unknown
    iatf: str | None = None  # ACTIVE, SEEN or INDETERMINATE for an IATF certificate


def _references(section: str, item: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    if section != "sites":
        yield "site", item.get("site"), "/site"
    if section != "products":
        yield "product", item.get("product"), "/product"
    if section == "capability_records":
        yield "characteristic", item.get("characteristic"), "/characteristic"
    if section == "products" and isinstance(item.get("manufactured_at"), list):
        for index, site in enumerate(item["manufactured_at"]):
            yield "site", site, f"/manufactured_at/{index}"
    if section == "certification_records" and isinstance(item.get("covered_sites"), list):
        for index, covered in enumerate(item["covered_sites"]):
            if isinstance(covered, dict):
                yield "site", covered.get("site"), f"/covered_sites/{index}/site"
    if section == "traceability_records" and isinstance(item.get("lots"), list):
        for index, lot in enumerate(item["lots"]):
            if isinstance(lot, dict):
                yield "site", lot.get("site"), f"/lots/{index}/site"


def _subject_key(section: str, item: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The hash of what a record is about and over which period (None: nothing to compare)."""
    if section == "certification_records":
        number, scheme = item.get("certificate_number"), item.get("scheme")
        message = f"certificate {number} of {scheme} is listed twice"
        return hash((section, scheme, number)), message
    period = item.get("period")
    if section in DECLARATION_KIND or not isinstance(period, dict):
        return None, None
    indicator = item.get("indicator")
    parts = (
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
    )
    return hash(parts), None


def _ppap_complete(item: Mapping[str, Any]) -> str | None:
    """The characteristic, if this capability record is a complete PPAP study of it."""
    ref = item.get("characteristic")
    n, groups = integer(item.get("sample_size")), integer(item.get("subgroup_count"))
    complete = (
        number(item.get("ppk")) is not None
        and isinstance(item.get("normality_test"), dict)
        and n is not None
        and n >= 100
        and groups is not None
        and groups >= 25
    )
    return ref if complete and isinstance(ref, str) else None


def _spec(item: Mapping[str, Any]) -> CharacteristicSpec | None:
    lower, upper = number(item.get("lower_spec_limit")), number(item.get("upper_spec_limit"))
    if lower is not None and upper is not None and lower >= upper:
        return None  # E002 reports the limits; checks that would rest on them stay silent
    return CharacteristicSpec(
        product=_interned(item.get("product")),
        unit=_interned(item.get("unit")),
        lower=lower,
        upper=upper,
        special_class=_interned(item.get("special_characteristic_class")),
    )


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
    _frozen: dict[str, frozenset[int]] | None = None

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

    def examine(
        self, section: str, item: Mapping[str, Any], at: str, *, sound: bool = True
    ) -> tuple[CrossFacts, list[Finding]]:
        """What this item contributes to the feed-wide checks, read against the declarations
        known so far; changes nothing (so worker processes can run it).

        An item with structural errors (``sound=False``) contributes only its id and what it
        declares, so that references to it do not cascade into more findings.
        """
        found: list[Finding] = []
        identifier = item.get("id") if isinstance(item.get("id"), str) else None
        kind = DECLARATION_KIND.get(section) if identifier is not None else None
        spec = None
        special = False
        if section == "characteristics" and identifier is not None:
            special = bool(
                self.ctx.automotive and item.get("special_characteristic_class") in SPECIAL_CLASSES
            )
            spec = _spec(item)
        if not sound:
            reference = item.get("characteristic")
            capability = section == "capability_records" and isinstance(reference, str)
            iatf = section == "certification_records" and item.get("scheme") == "IATF_16949"
            facts = CrossFacts(
                section,
                identifier,
                kind,
                spec,
                special,
                indeterminate=reference if capability else None,
                iatf=INDETERMINATE if iatf else None,
            )
            return facts, found
        subject, certificate = _subject_key(section, item)
        ppap = None
        if section == "capability_records":
            found.extend(self._capability(item, at))
            ppap = _ppap_complete(item)
        facts = CrossFacts(
            section,
            identifier,
            kind,
            spec,
            special,
            refs=self._unresolved_refs(section, item),
            subject=subject,
            certificate=certificate,
            ppap=ppap,
            iatf=self._certificate(item) if section == "certification_records" else None,
        )
        return facts, found

    def apply(self, facts: CrossFacts, at: str) -> Iterator[Finding]:
        """Remember an examined item; report what collides with earlier items."""
        if facts.id is not None and not self.ids.add(facts.id):
            yield emit(
                "SQM-R001",
                f"id {facts.id!r} is used by an earlier item",
                f"{at}/id",
                value=facts.id,
            )
        if facts.declares is not None and facts.id is not None:
            self.declared[facts.declares].add(facts.id)
            if facts.special:
                self.special[facts.id] = at
            if facts.spec is not None:
                self.ctx.characteristics[facts.id] = facts.spec
        for kind, value, where in facts.refs:
            if value in self.declared[kind]:
                continue
            where = at + where
            if len(self.pending) < MAX_PENDING:
                self.pending.append((kind, value, where))
            else:
                yield self._unresolved(kind, value, where, streamed=True)
        if facts.subject is not None and not self.subjects.add_hash(facts.subject):
            message = (
                facts.certificate or "another record already covers the same subject and period"
            )
            yield emit("SQM-R003", message, at)
        if facts.ppap is not None:
            self.ppap_complete.add(facts.ppap)
        if facts.indeterminate is not None:
            self.indeterminate.add(facts.indeterminate)
        if facts.iatf is not None:
            self.iatf_seen = True
            if facts.iatf == ACTIVE:
                self.iatf_active = True
            elif facts.iatf == INDETERMINATE:
                self.iatf_indeterminate = True

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

    def _unresolved_refs(
        self, section: str, item: Mapping[str, Any]
    ) -> tuple[tuple[str, str, str], ...]:
        """References (kind, id, pointer below the item) not declared so far."""
        frozen = self._frozen
        unresolved = []
        for kind, value, where in _references(section, item):
            if not isinstance(value, str):
                continue
            known = (
                DigestSet.key_of(value) in frozen[kind] if frozen else value in self.declared[kind]
            )
            if not known:
                unresolved.append((kind, value, where))
        return tuple(unresolved)

    def freeze_declared(self) -> None:
        """Answer "is it declared?" from an immutable copy from now on (C-speed lookups).

        For a forked worker, whose declarations cannot change any more; the feed-wide process
        keeps learning declarations and must not call this."""
        self._frozen = {kind: table.keys() for kind, table in self.declared.items()}

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

    def _certificate(self, item: Mapping[str, Any]) -> str | None:
        if item.get("scheme") != "IATF_16949":
            return None
        issued = timestamp(self.ctx.header.get("issued_at"))
        if issued is None:
            return INDETERMINATE
        until = day(item.get("valid_until"))
        start = day(item.get("valid_from")) or day(item.get("issued_on"))
        if until and item.get("status") == "active":
            on = issued.date()
            if until >= on and (start is None or start <= on):
                return ACTIVE
        return SEEN

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
