"""Layer 4, cross-record: ids, references, duplicates, the feed sequence and profile-wide rules.

State is compact so that a million streamed records stay within memory: ids, declarations and
duplicate keys are 8-byte digests (:mod:`sqm.validator.compact`), the characteristics' specs
rows of arrays (:class:`~sqm.validator.context.CharacteristicTable`); only references to items
not declared yet are kept as strings, up to :data:`MAX_PENDING` of them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
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
    for kind, name, where in _simple_references(section):
        yield kind, item.get(name), where
    if section in _LIST_REFERENCES:
        yield from _listed_references(section, item)


@cache
def _simple_references(section: str) -> tuple[tuple[str, str, str], ...]:
    """(kind, field, pointer below the item) of the references a section's items make in a
    field of their own, in the order they are reported."""
    found = []
    if section != "sites":
        found.append(("site", "site", "/site"))
    if section != "products":
        found.append(("product", "product", "/product"))
    if section == "capability_records":
        found.append(("characteristic", "characteristic", "/characteristic"))
    return tuple(found)


_LIST_REFERENCES = frozenset({"products", "certification_records", "traceability_records"})


def _listed_references(section: str, item: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """The references a section's items make in lists (after the simple ones)."""
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
    # Characteristics given a spec since this was set (by the parallel validator, whose worker
    # processes know only the specs declared before they started).
    changed: DigestSet | None = None
    # References recently found declared (records of a feed refer to the same few sites and
    # products again and again): a set lookup instead of a search of the declarations.
    _known: set[tuple[str, str]] = field(default_factory=set)

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
        self,
        section: str,
        item: Mapping[str, Any],
        at: str,
        *,
        sound: bool = True,
        out: list[Finding] | None = None,
    ) -> tuple[Any, ...]:
        """What this item contributes to the feed-wide checks (the fields of
        :class:`CrossFacts`, as a plain tuple: cheaper to make and to pickle), read against the
        declarations known so far; changes nothing (so worker processes can run it). Findings that need
        only the declarations (a capability record naming another product than its
        characteristic's) are appended to ``out``.

        An item with structural errors (``sound=False``) contributes only its id and what it
        declares, so that references to it do not cascade into more findings.
        """
        get = item.get
        identifier = get("id")
        if not isinstance(identifier, str):
            identifier = None
        kind = DECLARATION_KIND.get(section) if identifier is not None else None
        spec = None
        special = False
        if section == "characteristics" and identifier is not None:
            special = bool(
                self.ctx.automotive and get("special_characteristic_class") in SPECIAL_CLASSES
            )
            spec = _spec(item)
        if not sound:
            reference = get("characteristic")
            capability = section == "capability_records" and isinstance(reference, str)
            iatf = section == "certification_records" and get("scheme") == "IATF_16949"
            return (
                section,
                identifier,
                kind,
                spec,
                special,
                (),
                None,
                None,
                None,
                reference if capability else None,
                INDETERMINATE if iatf else None,
            )
        if section == "certification_records" or section in DECLARATION_KIND:
            subject, certificate = _subject_key(section, item)
        else:  # _subject_key of a record, inlined
            period = get("period")
            subject = certificate = None
            if isinstance(period, dict):
                indicator = get("indicator")
                subject = hash(
                    (
                        section,
                        get("site"),
                        get("product"),
                        get("characteristic"),
                        get("detection_point"),
                        get("lead_time_definition"),
                        get("date_basis"),
                        indicator.get("name") if isinstance(indicator, dict) else None,
                        get("material"),
                        period.get("start"),
                        period.get("end"),
                    )
                )
        ppap = None
        if section == "capability_records":
            if out is not None:
                self._capability(item, at, out)
            # Only the automotive profile asks for PPAP-complete studies (R006); before the
            # header is read, the profiles are not known yet.
            if self.ctx.automotive or not self.ctx.profiles_final:
                ppap = _ppap_complete(item)
        iatf = self._certificate(item) if section == "certification_records" else None
        refs = self._unresolved_refs(section, item)
        return (
            section,
            identifier,
            kind,
            spec,
            special,
            refs,
            subject,
            certificate,
            ppap,
            None,
            iatf,
        )

    def apply(self, facts: CrossFacts, at: str) -> Iterator[Finding]:
        """Remember an examined item; report what collides with earlier items."""
        section, index = at[1:].rsplit("/", 1)
        out: list[Finding] = []
        self.apply_into(facts, section, int(index), out)
        return iter(out)

    def apply_into(
        self, facts: Sequence[Any], section: str, index: int, out: list[Finding]
    ) -> None:
        """:meth:`apply` for item ``index`` of ``section``, appending the findings (with that
        record index) to ``out``. ``facts`` is a :class:`CrossFacts` or the plain tuple of
        its fields."""
        identifier, declares, spec, special, refs, subject = facts[1:7]
        if identifier is not None and not self.ids.add_hash(hash(identifier)):
            out.append(
                emit(
                    "SQM-R001",
                    f"id {identifier!r} is used by an earlier item",
                    f"/{section}/{index}/id",
                    value=identifier,
                    record=index,
                )
            )
        if declares is not None and identifier is not None:
            self.declared[declares].add(identifier)
            if special:
                self.special[identifier] = f"/{section}/{index}"
            if spec is not None:
                self.ctx.characteristics[identifier] = spec
                if self.changed is not None:
                    self.changed.add(identifier)
        if refs:
            at = f"/{section}/{index}"
            for kind, value, where in refs:
                if value in self.declared[kind]:
                    continue
                where = at + where
                if len(self.pending) < MAX_PENDING:
                    self.pending.append((kind, value, where))
                else:
                    out.append(self._unresolved(kind, value, where, streamed=True, record=index))
        if subject is not None and not self.subjects.add_hash(subject):
            message = facts[7] or "another record already covers the same subject and period"
            out.append(emit("SQM-R003", message, f"/{section}/{index}", record=index))
        ppap, indeterminate, iatf = facts[8:11]
        if ppap is not None:
            self.ppap_complete.add(ppap)
        if indeterminate is not None:
            self.indeterminate.add(indeterminate)
        if iatf is not None:
            self.iatf_seen = True
            if iatf == ACTIVE:
                self.iatf_active = True
            elif iatf == INDETERMINATE:
                self.iatf_indeterminate = True

    def _unresolved(
        self, kind: str, value: str, at: str, streamed: bool = False, record: int | None = None
    ) -> Finding:
        hint = None
        if streamed:
            hint = f"Declare {KIND_SECTION[kind]} before the records that use them."
        return emit(
            "SQM-R002",
            f"{kind} {value!r} is not declared in {KIND_SECTION[kind]}",
            at,
            value=value,
            hint=hint,
            record=record,
        )

    def _unresolved_refs(
        self, section: str, item: Mapping[str, Any]
    ) -> tuple[tuple[str, str, str], ...]:
        """References (kind, id, pointer below the item) not declared so far."""
        declared = self.declared
        unresolved: list[tuple[str, str, str]] = []
        simple = _simple_references(section)
        get = item.get
        known = self._known
        for kind, name, where in simple:
            value = get(name)
            if not isinstance(value, str) or (kind, value) in known:
                continue
            if declared[kind].contains_hash(hash(value)):
                # Declarations are never taken back: remembering a hit is always right.
                if len(known) >= 4096:
                    known.clear()
                known.add((kind, value))
            else:
                unresolved.append((kind, value, where))
        if section in _LIST_REFERENCES:
            for kind, value, where in _listed_references(section, item):
                if isinstance(value, str) and value not in declared[kind]:
                    unresolved.append((kind, value, where))
        return tuple(unresolved) if unresolved else ()

    def _capability(self, item: Mapping[str, Any], at: str, out: list[Finding]) -> None:
        ref, product = item.get("characteristic"), item.get("product")
        spec = self.ctx.characteristics.get(ref) if isinstance(ref, str) else None
        if spec and spec.product and isinstance(product, str) and product != spec.product:
            out.append(
                emit(
                    "SQM-R005",
                    f"{ref} belongs to {spec.product}, the record names {product}",
                    f"{at}/product",
                    value=product,
                )
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
