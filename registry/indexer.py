"""The search index, derived from the log: applied entry by entry in log order, rebuilt from
the log at will, and checked against it.

The log is authoritative. Each attestation's feed is read from the stored envelope whose
payload hash the log leaf binds (checked on every apply), so the index holds nothing the log
does not prove. Endorsements raise the endorsed attestation's assurance, each as far as its
endorser's identity is verified: the index keeps every endorsement and the operator's latest
verification status of every identity, both from the log, and ranks an attestation by the
endorsements of verified endorsers only, again whenever a status changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy import (
    Engine,
    LargeBinary,
    Select,
    bindparam,
    delete,
    func,
    literal,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection

from sqm.registry.db import (
    INDEX_LOCK,
    attestations,
    envelope_of,
    exclusive,
    index_attestations,
    index_certifications,
    index_classifications,
    index_countries,
    index_endorsements,
    index_facts,
    index_latest_filters,
    index_state,
    index_suppliers,
    index_verifications,
    inflate,
    insert_many,
    insert_tuples,
    log_entries,
    writing,
)
from sqm.registry.errors import RegistryError
from sqm.registry.facts import ASSURANCE_ORDER, Certification, Fact, FeedFacts, fact_rows

T = TypeVar("T")
STATE = "log"
FORMAT = "format"  # index_state row: the index's format, upgraded in place at start
CURRENT_FORMAT = 3  # 2: index_latest_filters; 3: assurance from verified endorsers only
VERIFIED = "verified"
ROW_TABLES = (index_facts, index_certifications, index_classifications, index_countries)
# Each table's rows are built as tuples in its column order (index_facts' by facts.fact_rows):
# a column added or moved must stop the indexer here, not store values in the wrong columns.
_ROW_SHAPES = {
    index_facts: ("log_index", "supplier", *Fact._fields[:-1], "claimed_rank"),
    index_certifications: ("log_index", "supplier", *Certification._fields),
    index_classifications: ("log_index", "supplier", "product", "scheme", "code"),
    index_countries: ("log_index", "supplier", "country"),
}
if any(tuple(table.c.keys()) != shape for table, shape in _ROW_SHAPES.items()):
    raise RuntimeError("an index table's columns no longer match the rows the indexer builds")


class Priority(Protocol):
    """Where the indexer runs a batch's work."""

    def run(
        self,
        work: Callable[[], T],
        behind: int,
        storing: bool,
        recount: Callable[[], int] | None = None,
    ) -> T:
        """Run ``work`` (computing a batch's rows, or ``storing`` them) and return its result;
        ``behind``: the log entries beyond the batch that the index does not hold yet, and
        ``recount`` counts them again (for a priority that may wait before it runs ``work``)."""
        ...


def _beyond(connection: Connection, last: int) -> int:
    """How many log entries lie beyond index ``last``."""
    newest = connection.execute(select(func.max(log_entries.c.idx))).scalar()
    return max(0, int(-1 if newest is None else newest) - last)


class IndexMismatchError(RegistryError):
    """The stored envelope does not match the log leaf that binds it."""


def rank(level: str) -> int:
    """The position of an assurance level, weakest (0) to strongest."""
    return _RANKS.get(level, 0)


_RANKS = {level: position for position, level in enumerate(ASSURANCE_ORDER)}


@dataclass(frozen=True)
class Rows:
    """The index rows one attestation contributes: of each of ROW_TABLES, tuples of its
    columns' values in the table's column order."""

    attestation: dict[str, Any]
    by_table: dict[str, list[tuple[Any, ...]]]


def rows_for(index: int, leaf: dict[str, Any], payload: bytes) -> tuple[FeedFacts, Rows]:
    """The index rows of the attestation at ``index``, its payload checked against its leaf."""
    if hashlib.sha256(payload).hexdigest() != leaf.get("payloadSha256"):
        raise IndexMismatchError(f"entry {index}: the stored envelope does not match the log leaf")
    feed = _parsed(payload)["predicate"]
    # The facts' rows come final from fact_rows: an attestation has hundreds, and building each
    # as a Fact, then a dict, then the insert's tuple took a third of the indexer's CPU (py-spy).
    facts, fact_table = fact_rows(feed, index, _utc, rank)
    supplier = facts.supplier
    tables: dict[str, list[tuple[Any, ...]]] = {
        "index_facts": fact_table,
        "index_certifications": [(index, supplier, *c) for c in facts.certifications],
        "index_classifications": [(index, supplier, *c) for c in facts.classifications],
        "index_countries": [(index, supplier, country) for country in facts.countries],
    }
    attestation = {
        "log_index": index,
        "supplier": supplier,
        "feed_id": facts.feed_id,
        "feed_sequence": facts.sequence,
        "issued_at": _utc(facts.issued_at),
        "previous_index": leaf.get("previousIndex"),
        "payload_sha256": leaf["payloadSha256"],
        "assurance_rank": 0,
    }
    return facts, Rows(attestation, tables)


@dataclass(frozen=True)
class _Batch:
    """The rows of a batch of log entries, ready to store."""

    attestations: list[dict[str, Any]]
    by_table: dict[str, list[tuple[Any, ...]]]  # as Rows.by_table
    # supplier: newest attestation's FeedFacts (of fact_rows: its facts are rows), index, count
    latest: dict[str, tuple[FeedFacts, int, int]]
    trust: _Trust


@dataclass
class _Trust:
    """The endorsements and verification statuses of a run of log entries."""

    # index_endorsements rows: (log index, attestation index, endorser, assurance rank)
    endorsements: list[tuple[int, int, str, int]]
    # identity: (its newest verification status among the entries, the entry that set it)
    verifications: dict[str, tuple[str, int]]

    def add(self, index: int, leaf: dict[str, Any]) -> None:
        """Take the log entry ``index`` (its leaf) if it endorses or sets a status."""
        kind = leaf.get("kind")
        if kind == "endorsement":
            self.endorsements.append(
                (
                    index,
                    int(leaf["attestationIndex"]),
                    str(leaf.get("endorser")),
                    rank(str(leaf.get("assurance"))),
                )
            )
        elif kind == "supplier-verification":
            self.verifications[str(leaf.get("supplier"))] = (str(leaf.get("verification")), index)

    def ranks(self) -> dict[int, int]:
        """Each endorsed attestation's rank by verified endorsers (0 when none is verified),
        for a run that starts at the log's first entry."""
        ranked: dict[int, int] = {}
        for _, attestation, endorser, level in self.endorsements:
            verified = self.verifications.get(endorser, ("",))[0] == VERIFIED
            ranked[attestation] = max(ranked.get(attestation, 0), level if verified else 0)
        return ranked


class Indexer:
    """Keeps the index tables up to date with the log of ``engine``."""

    def __init__(self, engine: Engine, batch: int = 64, priority: Priority | None = None) -> None:
        """``batch``: entries applied per write transaction. ``priority``: where each batch's
        computing and storing run, told how far the index trails the log (by default both in
        this thread); the background indexer gives them only spare CPU while it trails by
        little (``integrator.SpareCpu``)."""
        self.engine = engine
        self.batch = batch
        self.priority = priority

    def position(self, connection: Connection | None = None) -> int:
        """The last log index applied (-1 before any)."""
        if connection is not None:
            return self._position(connection)
        with self.engine.connect() as own:
            return self._position(own)

    @staticmethod
    def _position(connection: Connection) -> int:
        value = connection.execute(
            select(index_state.c.last_index).where(index_state.c.name == STATE)
        ).scalar()
        return -1 if value is None else int(value)

    def catch_up(self, wait: bool = True) -> int:
        """Apply every log entry not applied yet, in log order; how many were applied. One
        indexer runs at a time; with ``wait`` False, return 0 at once when another runs."""
        with exclusive(self.engine, "indexer", INDEX_LOCK, wait) as held:
            return self._catch_up() if held else 0

    def _catch_up(self) -> int:
        applied = 0
        while True:
            with self.engine.connect() as connection:
                last = self._position(connection)
                entries = connection.execute(
                    select(log_entries.c.idx, log_entries.c.leaf, attestations.c.envelope)
                    .outerjoin(attestations, attestations.c.seq == log_entries.c.seq)
                    .where(log_entries.c.idx > last)
                    .order_by(log_entries.c.idx)
                    .limit(self.batch)
                ).all()
                if not entries:
                    return applied
                new_last = int(entries[-1][0])
                behind = 0 if self.priority is None else _beyond(connection, new_last)
            # The rows are computed before the write transaction: it is held only to store them.
            batch = self._run(functools.partial(self._prepare_rows, entries), behind, False)
            store = functools.partial(self._commit, batch, last, new_last)
            self._run(store, behind, True, functools.partial(self._behind, new_last))
            applied += len(entries)

    def _run(
        self,
        work: Callable[[], T],
        behind: int,
        storing: bool,
        recount: Callable[[], int] | None = None,
    ) -> T:
        if self.priority is None:
            return work()
        return self.priority.run(work, behind, storing, recount)

    def _behind(self, last: int) -> int:
        with self.engine.connect() as connection:
            return _beyond(connection, last)

    def _commit(self, batch: _Batch, last: int, new_last: int) -> None:
        """Store a batch's rows and move the index's position from ``last`` to ``new_last``."""
        with writing(self.engine, index=True) as connection:
            if self._position(connection) != last:
                raise RegistryError("the index moved under its single writer")
            self._store(connection, batch)
            if last < 0:
                connection.execute(index_state.insert().values(name=STATE, last_index=new_last))
                # An index begun from the log's first entry is of this version's format.
                connection.execute(delete(index_state).where(index_state.c.name == FORMAT))
                connection.execute(
                    index_state.insert().values(name=FORMAT, last_index=CURRENT_FORMAT)
                )
            else:
                connection.execute(
                    update(index_state)
                    .where(index_state.c.name == STATE)
                    .values(last_index=new_last)
                )

    @classmethod
    def _prepare_rows(cls, entries: Sequence[Any]) -> _Batch:
        return cls._prepare([(int(i), _leaf(bytes(leaf)), e) for i, leaf, e in entries])

    @staticmethod
    def _prepare(entries: list[tuple[int, dict[str, Any], str | None]]) -> _Batch:
        """The index rows of a batch of entries, given in log order."""
        attestation_rows: list[dict[str, Any]] = []
        by_table: dict[str, list[tuple[Any, ...]]] = {table.name: [] for table in ROW_TABLES}
        latest: dict[str, tuple[FeedFacts, int, int]] = {}  # supplier: newest facts, index, count
        trust = _Trust([], {})
        for index, leaf, envelope in entries:
            kind = leaf.get("kind")
            if kind == "attestation":
                if envelope is None:
                    raise IndexMismatchError(
                        f"entry {index}: the attestation's envelope is missing"
                    )
                facts, rows = rows_for(index, leaf, _payload(envelope))
                attestation_rows.append(rows.attestation)
                for name, table_rows in rows.by_table.items():
                    by_table[name].extend(table_rows)
                count = latest[facts.supplier][2] if facts.supplier in latest else 0
                latest[facts.supplier] = (facts, index, count + 1)
            else:
                trust.add(index, leaf)
        return _Batch(attestation_rows, by_table, latest, trust)

    def _store(self, connection: Connection, batch: _Batch) -> None:
        """Write a prepared batch, with one insert per table."""
        insert_many(connection, index_attestations, batch.attestations)
        for table in ROW_TABLES:
            insert_tuples(connection, table, batch.by_table[table.name])
        self._latest(connection, batch.latest)
        self._latest_filters(connection, batch.latest)
        # After the inserts: an endorsement may name an attestation of this very batch.
        trust = batch.trust
        insert_tuples(connection, index_endorsements, trust.endorsements)
        affected = {attestation for _, attestation, _, _ in trust.endorsements}
        names = sorted(trust.verifications)
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            connection.execute(
                delete(index_verifications).where(index_verifications.c.supplier.in_(chunk))
            )
            affected.update(
                connection.execute(
                    select(index_endorsements.c.attestation_index).where(
                        index_endorsements.c.endorser.in_(chunk)
                    )
                ).scalars()
            )
        insert_tuples(
            connection,
            index_verifications,
            [(name, *trust.verifications[name]) for name in names],
        )
        ordered = sorted(affected)
        for start in range(0, len(ordered), 500):
            _rank(connection, index_attestations.c.log_index.in_(ordered[start : start + 500]))

    @staticmethod
    def _latest(connection: Connection, latest: dict[str, tuple[FeedFacts, int, int]]) -> None:
        """Each supplier's newest attestation of the batch, and how many it added."""
        names = sorted(latest)
        known: dict[str, int] = {}
        for start in range(0, len(names), 500):
            rows = connection.execute(
                select(index_suppliers.c.supplier, index_suppliers.c.attestation_count).where(
                    index_suppliers.c.supplier.in_(names[start : start + 500])
                )
            )
            known.update({supplier: int(count) for supplier, count in rows})
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for supplier in names:
            facts, index, added = latest[supplier]
            values = {
                "name": facts.name,
                "country": facts.country,
                "latest_index": index,
                "latest_issued_at": _utc(facts.issued_at),
            }
            if supplier in known:
                changed.append(
                    {"key": supplier, "attestation_count": known[supplier] + added, **values}
                )
            else:
                new.append({"supplier": supplier, "attestation_count": added, **values})
        insert_many(connection, index_suppliers, new)
        if changed:
            connection.execute(
                update(index_suppliers).where(index_suppliers.c.supplier == bindparam("key")),
                changed,
            )

    @staticmethod
    def _latest_filters(
        connection: Connection, latest: dict[str, tuple[FeedFacts, int, int]]
    ) -> None:
        """Replace the filter values of each supplier whose latest attestation changed."""
        names = sorted(latest)
        for start in range(0, len(names), 500):
            connection.execute(
                delete(index_latest_filters).where(
                    index_latest_filters.c.supplier.in_(names[start : start + 500])
                )
            )
        insert_many(
            connection,
            index_latest_filters,
            [
                {"kind": kind, "value": value, "supplier": supplier, "log_index": index}
                for supplier in names
                for kind, value in filter_values(latest[supplier][0])
                for index in (latest[supplier][1],)
            ],
        )

    def upgrade(self) -> None:
        """Bring an index made by an earlier version to the current format, in place: the
        latest filter values (format 2) are derived from the rows already indexed; the
        endorsements and verification statuses (format 3) from the log up to the index's
        position, and every attestation's assurance ranked by them."""
        if self._format() >= CURRENT_FORMAT:  # the usual case: no lock, no wait
            return
        with exclusive(self.engine, "indexer", INDEX_LOCK):
            found = self._format()
            if found >= CURRENT_FORMAT:
                return
            with writing(self.engine, index=True) as connection:
                if found < 2:
                    connection.execute(delete(index_latest_filters))
                    derive_latest_filters(connection)
                trust = _logged_trust(connection, self._position(connection))
                connection.execute(delete(index_endorsements))
                connection.execute(delete(index_verifications))
                insert_tuples(connection, index_endorsements, trust.endorsements)
                insert_tuples(
                    connection,
                    index_verifications,
                    [(name, *status) for name, status in sorted(trust.verifications.items())],
                )
                _rank(connection, None)
                if found < 0:
                    connection.execute(
                        index_state.insert().values(name=FORMAT, last_index=CURRENT_FORMAT)
                    )
                else:
                    connection.execute(
                        update(index_state)
                        .where(index_state.c.name == FORMAT)
                        .values(last_index=CURRENT_FORMAT)
                    )

    def _format(self) -> int:
        """The index's recorded format; -1 when none is recorded (an index of format 1)."""
        with self.engine.connect() as connection:
            found = connection.execute(
                select(index_state.c.last_index).where(index_state.c.name == FORMAT)
            ).scalar()
        return -1 if found is None else int(found)

    def rebuild(self) -> int:
        """Drop the index and apply the whole log again; how many entries were applied."""
        with exclusive(self.engine, "indexer", INDEX_LOCK):
            with writing(self.engine, index=True) as connection:
                for table in (
                    *ROW_TABLES,
                    index_attestations,
                    index_suppliers,
                    index_endorsements,
                    index_verifications,
                ):
                    connection.execute(delete(table))
                connection.execute(delete(index_latest_filters))
                connection.execute(delete(index_state))
                # Rebuilt from the log, the index is of this version's format.
                connection.execute(
                    index_state.insert().values(name=FORMAT, last_index=CURRENT_FORMAT)
                )
            return self._catch_up()

    def check(self) -> list[str]:
        """Compare every attestation's index rows with what its log entry yields; the
        differences (empty when the index matches the log up to its position)."""
        problems: list[str] = []
        found = self._format()
        if found < CURRENT_FORMAT:
            # What follows then differs where the formats do: say why first.
            problems.append(
                f"the index is of format {max(found, 1)}, this registry's is {CURRENT_FORMAT}: "
                "starting the registry upgrades it, or `sqm registry reindex` rebuilds it"
            )
        position = self.position()
        with self.engine.connect() as connection:
            # The envelopes as stored, inflated per entry: a damaged one is a problem of its
            # entry, and the check goes on.
            raw = type_coerce(attestations.c.envelope, LargeBinary)
            entries = connection.execute(
                select(log_entries.c.idx, log_entries.c.leaf, raw)
                .join(attestations, attestations.c.seq == log_entries.c.seq)
                .where(log_entries.c.idx <= position)
                .order_by(log_entries.c.idx)
            )
            for index, leaf, envelope in entries:
                try:
                    payload = _payload(inflate(envelope))
                    _, expected = rows_for(int(index), _leaf(bytes(leaf)), payload)
                except (RegistryError, ValueError, KeyError) as exc:
                    problems.append(f"entry {index}: {exc}")
                    continue
                for table in ROW_TABLES:
                    stored = connection.execute(
                        select(*list(table.c)).where(table.c.log_index == int(index))
                    ).mappings()
                    keys = table.c.keys()
                    rows = [
                        dict(zip(keys, row, strict=True)) for row in expected.by_table[table.name]
                    ]
                    if _normal(stored) != _normal(rows):
                        problems.append(f"entry {index}: {table.name} differs from the log")
                row = (
                    connection.execute(
                        select(index_attestations).where(
                            index_attestations.c.log_index == int(index)
                        )
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    problems.append(f"entry {index}: missing from index_attestations")
                elif any(
                    _same(row[key]) != _same(value)
                    for key, value in expected.attestation.items()
                    if key != "assurance_rank"
                ):
                    problems.append(f"entry {index}: index_attestations differs from the log")
            count = connection.execute(
                select(index_attestations.c.log_index).where(
                    index_attestations.c.log_index > position
                )
            ).first()
            if count is not None:
                problems.append("the index holds attestations beyond its recorded position")
            derived: set[tuple[Any, ...]] = {
                tuple(row)
                for statement in _latest_filter_rows()
                for row in connection.execute(statement)
            }
            kept = {tuple(row) for row in connection.execute(select(index_latest_filters))}
            if derived != kept:
                problems.append(
                    f"index_latest_filters differs from the latest attestations' rows "
                    f"({len(kept - derived)} extra, {len(derived - kept)} missing)"
                )
            problems.extend(_trust_problems(connection, position))
        return problems


def _rank(connection: Connection, which: Any) -> None:
    """Set the assurance_rank of the attestations ``which`` selects (None: all) to their
    strongest endorsement by a verified endorser, 0 when there is none."""
    best = (
        select(func.max(index_endorsements.c.assurance_rank))
        .join(
            index_verifications,
            index_verifications.c.supplier == index_endorsements.c.endorser,
        )
        .where(
            index_endorsements.c.attestation_index == index_attestations.c.log_index,
            index_verifications.c.verification == VERIFIED,
        )
        .scalar_subquery()
    )
    statement = update(index_attestations).values(assurance_rank=func.coalesce(best, 0))
    connection.execute(statement if which is None else statement.where(which))


def _logged_trust(connection: Connection, position: int) -> _Trust:
    """The endorsements and verification statuses of the log up to entry ``position``: read
    from the entries that are no attestations (keys, revocations, statuses, endorsements)."""
    trust = _Trust([], {})
    entries = connection.execute(
        select(log_entries.c.idx, log_entries.c.leaf)
        .outerjoin(attestations, attestations.c.seq == log_entries.c.seq)
        .where(attestations.c.seq.is_(None), log_entries.c.idx <= position)
        .order_by(log_entries.c.idx)
    )
    for index, leaf in entries:
        trust.add(int(index), _leaf(bytes(leaf)))
    return trust


def _trust_problems(connection: Connection, position: int) -> list[str]:
    """How the index's endorsements, statuses and assurance ranks differ from the log's."""
    problems = []
    trust = _logged_trust(connection, position)
    stored = {tuple(row) for row in connection.execute(select(index_endorsements))}
    if stored != set(trust.endorsements):
        problems.append("index_endorsements differs from the log's endorsements")
    statuses = {
        str(name): (str(status), int(index))
        for name, status, index in connection.execute(select(index_verifications))
    }
    if statuses != trust.verifications:
        problems.append("index_verifications differs from the log's verification statuses")
    expected = {index: level for index, level in trust.ranks().items() if level}
    ranked = {
        int(index): int(level)
        for index, level in connection.execute(
            select(index_attestations.c.log_index, index_attestations.c.assurance_rank).where(
                index_attestations.c.assurance_rank != 0
            )
        )
    }
    for index in sorted(set(expected) | set(ranked)):
        if expected.get(index, 0) != ranked.get(index, 0):
            problems.append(
                f"entry {index}: assurance rank {ranked.get(index, 0)}, the log's verified "
                f"endorsements give {expected.get(index, 0)}"
            )
    return problems


def filter_values(facts: FeedFacts) -> list[tuple[str, str]]:
    """What an attestation may be filtered by: (kind, value) pairs, each once."""
    values = {("country", country) for country in facts.countries}
    values |= {("classification", f"{scheme}:{code}") for _, scheme, code in facts.classifications}
    values |= {("certification", c.scheme) for c in facts.certifications}
    return sorted(values)


def derive_latest_filters(connection: Connection) -> None:
    """Fill index_latest_filters from the rows of each supplier's latest attestation."""
    for statement in _latest_filter_rows():
        connection.execute(
            index_latest_filters.insert().from_select(
                ["kind", "value", "supplier", "log_index"], statement
            )
        )


def _latest_filter_rows() -> list[Select[Any]]:
    latest = index_suppliers.c
    statements = []
    for kind, table, value in (
        ("country", index_countries, index_countries.c.country),
        (
            "classification",
            index_classifications,
            index_classifications.c.scheme + ":" + index_classifications.c.code,
        ),
        ("certification", index_certifications, index_certifications.c.scheme),
    ):
        statements.append(
            select(literal(kind), value, latest.supplier, latest.latest_index)
            .join_from(index_suppliers, table, table.c.log_index == latest.latest_index)
            .distinct()
        )
    return statements


def _leaf(raw: bytes) -> dict[str, Any]:
    """A leaf's JSON object; other leaves (none the registry writes) carry nothing to index."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


@lru_cache(maxsize=4096)  # a feed's facts share a few instants
def _utc(value: datetime | None) -> datetime | None:
    """Stored in UTC: SQLite keeps no offset, so instants compare only when normalised."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _payload(envelope: str) -> bytes:
    return envelope_of(envelope).payload


def _parsed(text: str | bytes) -> Any:
    """json.loads's value. Why orjson first: the index parses every logged feed again, and
    orjson takes a third of json's time. It differs from json.loads only on what no logged
    feed holds (every accepted feed has a canonical form, RFC 8785, so no integer beyond
    2^53 and nothing beyond RFC 8259); text it refuses still goes to json.loads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _same(value: Any) -> Any:
    """A comparable form: timestamps as UTC instants (SQLite returns them naive)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    if isinstance(value, float):
        return round(value, 9)
    return value


def _normal(rows: Any) -> list[tuple[Any, ...]]:
    return sorted(
        (tuple((k, repr(_same(v))) for k, v in sorted(dict(row).items())) for row in rows),
    )
