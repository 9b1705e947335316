"""Supplier search over the index, answered with the means to verify every hit.

Each hit is a supplier's latest attestation (or its latest as of a date) that meets the query,
with its log index, a link to its offline bundle and, on request, its inclusion proof against
the checkpoint the answer states. The index only narrows the search: what a buyer believes is
what the bundle proves.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Connection

from sqm.registry.db import (
    index_attestations,
    index_certifications,
    index_classifications,
    index_countries,
    index_facts,
    index_latest_filters,
    index_suppliers,
    suppliers,
)
from sqm.registry.facts import ASSURANCE_ORDER
from sqm.registry.indexer import Indexer
from sqm.registry.log import TransparencyLog
from sqm.registry.query import SupplierQuery, encode_cursor
from sqm.schema.artifacts import units

EPSILON = 1e-9
# Rows counted, at most, of each filter's set of suppliers when choosing where a search starts:
# a cheap first look, then a closer one when several sets are larger than it (about 1 ms
# each at 10,000 rows of a covering index).
STARTING_SET_PROBES = (1000, 10_000)
SET_SIZES_FOR = 60.0  # seconds a counted set size steers searches


class _FilterSet(NamedTuple):
    """The suppliers whose latest attestation has a filter's value(s)."""

    kind: str
    value: str | None  # the one value that selects them; None for a range (a code prefix)
    label: str  # names the set among its kind's: the value, or the prefix and "*"
    bounds: tuple[str, str] | None = None  # a range's least value and the least beyond it

    @property
    def name(self) -> str:
        """Its parameters' prefix in a statement (a query has at most one set of a kind)."""
        return f"set_{self.kind}"

    @property
    def suppliers(self) -> Select[Any]:
        """The set's suppliers, with its value(s) bound."""
        return self.members().params(self.parameters())

    def members(self) -> Select[Any]:
        """The set's suppliers, its value(s) left as parameters (:meth:`parameters`)."""
        values = index_latest_filters.c
        return select(values.supplier).where(values.kind == self.kind, self.holds(values.value))

    def holds(self, value: ColumnElement[str]) -> ColumnElement[bool]:
        """Whether ``value``, a kind's value in index_latest_filters, is in this set."""
        if self.bounds is None:
            return value == bindparam(f"{self.name}_value")
        return and_(value >= bindparam(f"{self.name}_low"), value < bindparam(f"{self.name}_high"))

    def parameters(self) -> dict[str, str]:
        if self.bounds is None:
            assert self.value is not None
            return {f"{self.name}_value": self.value}
        return {f"{self.name}_low": self.bounds[0], f"{self.name}_high": self.bounds[1]}


def _holds(op: str, value: Any, number: int) -> ColumnElement[bool]:
    """Condition ``number``'s test of ``value`` (its threshold a parameter: :func:`_values`)."""
    threshold = bindparam(f"c{number}_threshold", type_=Float())
    if op == ">=":
        return value >= threshold  # type: ignore[no-any-return]
    if op == ">":
        return value > threshold  # type: ignore[no-any-return]
    if op == "<=":
        return value <= threshold  # type: ignore[no-any-return]
    if op == "<":
        return value < threshold  # type: ignore[no-any-return]
    return func.abs(value - threshold) <= bindparam(f"c{number}_tolerance", type_=Float())


def _shape(query: SupplierQuery) -> tuple[Any, ...]:
    """What a search's statement is built from, besides its values (:func:`_values`): two
    queries of one shape, whose searches start from the same sets, share one statement."""
    return (
        tuple((each.op, each.base_unit is not None) for each in query.conditions),
        query.match,
        query.country is not None,
        query.certification is not None,
        query.valid_on is not None,
        None if query.classification is None else query.classification[1].endswith("%"),
        query.characteristic_class is not None,
        query.assurance is not None,
        query.claimed_assurance is not None,
        query.fresh_since is not None,
        query.as_of is not None,
        query.sort,
        query.after is not None,
    )


class SupplierSearch:
    """Runs :class:`SupplierQuery` searches against the index of ``log``."""

    def __init__(self, log: TransparencyLog, indexer: Indexer) -> None:
        self.log = log
        self.indexer = indexer
        self._sizes: dict[tuple[str, str, int], tuple[int, float]] = {}
        self._postgres = log.engine.dialect.name == "postgresql"
        # Statements by shape: building one took a fifth of a search's CPU (SQLAlchemy's own
        # cache then spares only the SQL text), and a reused one also keeps its cache key.
        self._searches: dict[tuple[Any, ...], Select[Any]] = {}
        self._aggregates: dict[tuple[Any, ...], Select[Any]] = {}

    def _latest(self, query: SupplierQuery) -> Any:
        if query.as_of is None:
            return select(
                index_suppliers.c.supplier, index_suppliers.c.latest_index.label("log_index")
            ).subquery("latest")
        return (
            select(
                index_attestations.c.supplier,
                func.max(index_attestations.c.log_index).label("log_index"),
            )
            .where(index_attestations.c.issued_at <= bindparam("as_of"))
            .group_by(index_attestations.c.supplier)
            .subquery("latest")
        )

    def _scope(self, query: SupplierQuery, number: int) -> ColumnElement[bool]:
        """The facts that condition ``number`` tests."""
        facts = index_facts.c
        parts: list[ColumnElement[bool]] = [facts.metric == bindparam(f"c{number}_metric")]
        if query.conditions[number].base_unit is not None:
            parts.append(facts.base_unit == bindparam(f"c{number}_unit"))
        if query.characteristic_class is not None:
            parts.append(
                or_(
                    facts.section != "capability_records",
                    facts.characteristic_class == bindparam("characteristic_class"),
                )
            )
        if query.claimed_assurance is not None:
            parts.append(facts.claimed_rank >= bindparam("claimed_assurance"))
        if query.classification is not None:
            classified = select(index_classifications.c.product).where(
                index_classifications.c.log_index == facts.log_index,
                index_classifications.c.scheme == bindparam("class_scheme"),
                self._code_is(index_classifications.c.code, query.classification[1]),
            )
            parts.append(or_(facts.product.is_(None), facts.product.in_(classified)))
        return and_(*parts)

    def _code_is(self, column: ColumnElement[str], code: str) -> ColumnElement[bool]:
        """A classification code test: equal, or for a prefix (ending in %) the codes that
        start with it. On SQLite a range, not LIKE: SQLite cannot seek an index with LIKE
        (the attestation's every code of the scheme was read and matched), and its LIKE
        ignores case where PostgreSQL's does not. PostgreSQL keeps LIKE: under a linguistic
        collation a range of text is not the set of strings with a prefix. The code itself is
        a parameter (:meth:`_values`)."""
        if not code.endswith("%"):
            return column == bindparam("class_code")
        if self._postgres:
            return column.like(bindparam("class_code"))
        return and_(column >= bindparam("class_low"), column < bindparam("class_high"))

    @staticmethod
    def _filter_sets(query: SupplierQuery) -> list[_FilterSet]:
        """The query's filters that select suppliers by their latest attestation's values."""
        sets: list[_FilterSet] = []
        if query.classification is not None:
            scheme, code = query.classification
            if code.endswith("%"):  # a prefix: the range of values that start with it
                prefix = f"{scheme}:{code[:-1]}"
                bounds = (prefix, _after_prefix(prefix))
                sets.append(_FilterSet("classification", None, f"{prefix}*", bounds))
            else:
                wanted = f"{scheme}:{code}"
                sets.append(_FilterSet("classification", wanted, wanted))
        if query.country is not None:
            sets.append(_FilterSet("country", query.country, query.country))
        if query.certification is not None and query.valid_on is not None:
            wanted = query.certification
            sets.append(_FilterSet("certification", wanted, wanted))
        return sets

    def _starting_sets(
        self, query: SupplierQuery, sets: list[_FilterSet] | None = None
    ) -> list[_FilterSet]:
        """Sets of suppliers (by their latest attestation's filter values) that every hit is
        in, when the search is over latest attestations: the search walks the first, in
        supplier order, instead of every supplier. The filters are still tested exactly below.

        Which filter is most selective depends on the data (a common product family may
        cover a third of the suppliers and a country 2 %): each candidate set is counted up
        to a cap (STARTING_SET_PROBES), one covering-index range each, and the smallest walked.
        """
        if query.as_of is not None:
            return []
        sets = self._filter_sets(query) if sets is None else sets
        if len(sets) < 2:
            return sets
        for cap in STARTING_SET_PROBES:
            sizes = self._set_sizes(sets, cap)
            # Done when at most one set is larger than counted: that one is not the smallest.
            if sizes.count(cap) < 2:
                break
        # Of sets as large, a one value's: a range is read in full before its walk starts.
        order = sorted(range(len(sets)), key=lambda n: (sizes[n], sets[n].value is None, n))
        if sizes[order[0]] < STARTING_SET_PROBES[0]:
            return [sets[order[0]]]
        # A long walk: the other sets counted in full narrow it first, each read once into a
        # list of at most `cap` suppliers (at 100,000 suppliers, a country of 6,000 and a
        # product class of 8,300 in common: 35 -> 16 ms).
        return [sets[order[0]]] + [sets[n] for n in order[1:] if sizes[n] < cap]

    def _set_sizes(self, sets: list[_FilterSet], cap: int) -> list[int]:
        """How many suppliers each set holds, counted up to ``cap``. Counts are remembered
        for SET_SIZES_FOR seconds: they only steer where a search starts (its answer is
        the same from any start), and a set's size moves slowly, so most searches count
        nothing (an automotive search's counts cost 4.6 ms of its 28)."""
        now = time.monotonic()
        sizes: dict[int, int] = {}
        for n, each in enumerate(sets):
            known = self._sizes.get((each.kind, each.label, cap))
            if known is not None and known[1] > now:
                sizes[n] = known[0]
        missing = [n for n in range(len(sets)) if n not in sizes]
        if missing:
            probes = [
                select(func.count())
                .select_from(sets[n].suppliers.limit(cap).subquery())
                .scalar_subquery()
                for n in missing
            ]
            with self.log.engine.connect() as connection:
                counted = connection.execute(select(*probes)).one()
            if len(self._sizes) > 10_000:  # bounded: forget everything rather than grow
                self._sizes.clear()
            for n, size in zip(missing, counted, strict=True):
                sizes[n] = int(size)
                self._sizes[(sets[n].kind, sets[n].label, cap)] = (int(size), now + SET_SIZES_FOR)
        return [sizes[n] for n in range(len(sets))]

    def _exists(self, *criteria: ColumnElement[bool]) -> ColumnElement[bool]:
        """EXISTS over ``criteria``, a per-candidate test. On PostgreSQL with OFFSET 0, which
        keeps the planner from turning it into a semi-join: it then misjudged how many
        candidates pass (8,500 of 75,000 where 31,000 did), hashed and sorted every candidate
        instead of walking them in order and stopping with the page (2.6 s against ms)."""
        found = select(literal(1)).where(*criteria)
        if self._postgres:
            found = found.offset(0)
        return found.exists()

    def _meets(self, query: SupplierQuery, entry: Any) -> list[ColumnElement[bool]]:
        """Each condition as correlated tests on the candidate attestation's own facts.

        Why not one aggregate over the facts: grouping every fact of a metric (tens of
        millions at registry scale) to keep the latest ones cost seconds. Tested per
        candidate, through the (log_index, metric, base_value) index, a search costs in
        proportion to the suppliers it looks at, and stops with its page."""
        tests: list[ColumnElement[bool]] = []
        for number, condition in enumerate(query.conditions):
            scope = and_(index_facts.c.log_index == entry, self._scope(query, number))
            holds = _holds(condition.op, index_facts.c.base_value, number)
            tests.append(self._exists(scope, holds))
            if query.match == "all":  # at least one value in scope, and none that fails
                tests.append(not_(self._exists(scope, not_(holds))))
        return tests

    def _matches(
        self,
        connection: Connection,
        query: SupplierQuery,
        values: dict[str, Any],
        indexes: list[int],
    ) -> dict[int, list[tuple[float | None, float | None, int]]]:
        """For the hits of a page: each condition's (min, max, count) over the values in its
        scope, by log index (``values``: the search's parameters). One statement for every
        condition, each aggregate over its own scope: a statement per condition cost a tenth
        of a search's CPU."""
        found: dict[int, list[tuple[float | None, float | None, int]]] = {
            index: [] for index in indexes
        }
        if not indexes or not query.conditions:
            return found
        aggregate = _cached(self._aggregates, _shape(query), lambda: self._aggregate(query))
        parameters = {
            **values,
            "indexes": indexes,
            "metrics": sorted({c.metric for c in query.conditions}),
        }
        rows = connection.execute(aggregate, parameters).all()
        seen = {int(row[0]): row[1:] for row in rows}
        for index in indexes:
            aggregates = seen.get(index)
            for number in range(len(query.conditions)):
                if aggregates is None:
                    found[index].append((None, None, 0))
                else:
                    low, high, count = aggregates[3 * number : 3 * number + 3]
                    found[index].append((low, high, int(count)))
        return found

    def _aggregate(self, query: SupplierQuery) -> Select[Any]:
        """The statement of :meth:`_matches`, its values parameters."""
        facts = index_facts.c
        scopes = [self._scope(query, number) for number in range(len(query.conditions))]
        columns: list[Any] = [facts.log_index]
        for scope in scopes:
            in_scope = case((scope, facts.base_value))
            columns += [func.min(in_scope), func.max(in_scope), func.count(in_scope)]
        return (
            select(*columns)
            .where(
                facts.log_index.in_(bindparam("indexes", expanding=True)),
                # The metrics as a range of the (log_index, metric, base_value) index, as each
                # condition's own statement probed it: the scopes only filter those rows.
                facts.metric.in_(bindparam("metrics", expanding=True)),
                or_(*scopes),
            )
            .group_by(facts.log_index)
        )

    def _values(self, query: SupplierQuery, sets: list[_FilterSet]) -> dict[str, Any]:
        """The parameters of a search's statements: every value the query gives, by the
        names the statements of its shape use."""
        values: dict[str, Any] = {}
        for each in sets:
            values |= each.parameters()
        for number, condition in enumerate(query.conditions):
            values[f"c{number}_metric"] = condition.metric
            values[f"c{number}_unit"] = condition.base_unit
            values[f"c{number}_threshold"] = condition.threshold
            values[f"c{number}_tolerance"] = EPSILON * max(1.0, abs(condition.threshold))
        if query.classification is not None:
            scheme, code = query.classification
            values["class_scheme"] = scheme
            values["class_code"] = code
            if code.endswith("%"):
                values["class_low"] = code[:-1]
                values["class_high"] = _after_prefix(code[:-1])
        for name in ("characteristic_class", "claimed_assurance", "country", "certification"):
            values[name] = getattr(query, name)
        values["valid_on"] = query.valid_on
        values["assurance"] = query.assurance
        values["fresh_since"] = query.fresh_since
        values["as_of"] = query.as_of
        values["page"] = query.limit + 1
        if query.after is not None:
            value, last = query.after
            if query.sort in ("issued_at", "-issued_at"):
                value = datetime.fromisoformat(str(value))
            values["after_key"] = value
            values["after_supplier"] = last
        return values

    def statement(self, query: SupplierQuery, now: datetime) -> Select[Any]:
        """The SQL of a search, its values bound (exposed so that benchmarks can time the raw
        query)."""
        statement, values = self._search(query)
        return statement.params(values)

    def _search(self, query: SupplierQuery) -> tuple[Select[Any], dict[str, Any]]:
        """A search's statement, shared by the queries of its shape, and its parameters."""
        filter_sets = self._filter_sets(query)
        starting = self._starting_sets(query, filter_sets)
        shape = (_shape(query), tuple(filter_sets.index(each) for each in starting))
        statement = _cached(
            self._searches, shape, lambda: self._build(query, filter_sets, starting)
        )
        return statement, self._values(query, filter_sets)

    def _build(
        self, query: SupplierQuery, filter_sets: list[_FilterSet], starting: list[_FilterSet]
    ) -> Select[Any]:
        """The statement of a search's shape, each value a parameter (:meth:`_values`)."""
        starting = list(starting)
        latest = self._latest(query)
        attestation = index_attestations.c
        columns: list[Any] = [
            latest.c.supplier,
            latest.c.log_index,
            index_suppliers.c.name,
            index_suppliers.c.country,
            suppliers.c.verification,
            attestation.issued_at,
            attestation.feed_sequence,
            attestation.previous_index,
            attestation.assurance_rank,
        ]
        where: list[ColumnElement[bool]] = []
        walked: Any = latest
        walk: Any = None  # the walked set's rows, when the search walks one
        supplier: ColumnElement[str] = index_suppliers.c.supplier
        candidate: ColumnElement[str] = latest.c.supplier
        entry: Any = latest.c.log_index  # the candidate attestation, as the tests below name it
        first: tuple[str, str | None] | None = None
        walking = False  # whether the search walks one of the sets, not every supplier
        settled: set[tuple[str, str | None]] = set()  # (kind, value) sets the walk applied
        if starting and starting[0].value is not None:
            # One value selects the first set: the search walks its index entries, which are
            # in supplier order, and stops with its page; an IN list would first read them
            # all (75,000 suppliers hold ISO 9001: 18 -> 0.7 ms for a dense search). Each
            # (kind, value, supplier) is stored once (filter_values), so no hit repeats.
            chosen = starting.pop(0)
            first = (chosen.kind, chosen.value)
            walking = True
            start = walk = index_latest_filters.alias("start")
            walk_where = [start.c.kind == chosen.kind, chosen.holds(start.c.value)]
            supplier = candidate = start.c.supplier
            # The tests name the walked row's own log index: SQLite then runs each one as soon
            # as the walk yields a supplier, before joining its name, attestation and identity.
            entry = start.c.log_index
        elif starting and self._postgres:
            # A product-class prefix, a range of values, is the smallest set. SQLite walks its
            # IN list below in supplier order by itself; PostgreSQL walked every supplier and
            # tested each against the list (automotive searches at 100,000 suppliers, the
            # slowest 100 -> 47 ms), so here the walk is over the range's suppliers, sorted.
            chosen = starting.pop(0)
            values = index_latest_filters.c
            ranged = (
                select(values.supplier)
                .where(values.kind == chosen.kind, chosen.holds(values.value))
                .distinct()
                .order_by(values.supplier)
                .subquery("start")
            )  # suppliers only: read from the covering index alone
            walk = ranged
            supplier = candidate = ranged.c.supplier
            walking = True
        merged: list[_FilterSet] = []
        if walk is not None and self._postgres:
            # PostgreSQL: every other one-value set joins the walk, which it merges with the
            # set's own index entries, both in supplier order: an EXISTS probe there costs some
            # 3 us a walked supplier, reading a set into a hash all of the set (at 100,000
            # suppliers, a product class of 3,101 and a country of 14,006: 9.3 ms of probes,
            # 2.1 ms merged), and a merge stops with the page as the walk does.
            merged = [
                each
                for each in filter_sets
                if each.value is not None and (each.kind, each.value) != first
            ]
            for number, each in enumerate(merged):
                also = index_latest_filters.alias(f"with_{number}")
                walk = walk.join(
                    also,
                    and_(
                        also.c.supplier == candidate,
                        also.c.kind == each.kind,
                        each.holds(also.c.value),
                    ),
                )
            starting = [each for each in starting if each not in merged]
            if first is not None and merged:
                # Behind a fence (OFFSET 0): the tests below name the walked row's log index,
                # and PostgreSQL would run them on every walked row before the merge rejects
                # most (the same critical search: 22.7 ms). A cursor in supplier order goes
                # inside, where it seeks the walk's index: nothing is pushed through a fence.
                if query.after is not None and query.sort == "supplier":
                    walk_where.append(start.c.supplier > bindparam("after_supplier"))
                walk = (
                    select(start.c.supplier, start.c.log_index)
                    .select_from(walk)
                    .where(*walk_where)
                    .order_by(start.c.supplier)  # which the merge gives: no sort above
                    .offset(0)
                    .subquery("walk")
                )
                supplier = candidate = walk.c.supplier
                entry = walk.c.log_index
                walk_where = []
        if first is not None:
            where += walk_where
        if walk is not None:
            walked = walk.join(latest, latest.c.supplier == candidate)
        if starting or walking:
            # On SQLite every other one-value set tests a walked supplier with one probe of the
            # same covering index, first, before any of the supplier's other rows is read:
            # cheaper than reading the set into an IN list, and than letting the exact tests
            # below reject it (at 100,000 suppliers, the slowest of 60 buyer searches 53 -> 43
            # ms of CPU, their mean 19.1 -> 16.7 ms). PostgreSQL merged those sets into the
            # walk (above), and reads a range counted in full once into a hash (below).
            hashed = set(starting) if self._postgres else set()
            probed = [
                each
                for each in filter_sets
                if each.value is not None
                and (each.kind, each.value) != first
                and each not in hashed
                and each not in merged
            ]
            # When SQLite walks a one-value set, a range (a product-class prefix) too: one seek
            # per walked supplier, not a list of the range's suppliers read first. (A range that
            # is the smallest set is the walk itself; PostgreSQL walks it or hashes it as a
            # list below.)
            ranges = (
                [each for each in filter_sets if each.value is None]
                if first is not None and not self._postgres
                else []
            )
            for number, each in enumerate(probed + ranges):
                also = index_latest_filters.alias(f"also_{number}")
                where.append(
                    self._exists(
                        also.c.kind == each.kind,
                        also.c.supplier == candidate,
                        each.holds(also.c.value),
                    )
                )
            if not self._postgres:  # a range left is the walk itself, read as a list
                starting = [] if ranges else [each for each in starting if each.value is None]
            # A country or product class found in index_latest_filters is one that the
            # supplier's latest attestation names (the indexer derives those rows from its
            # rows in one transaction): its exact test below would only repeat the lookup.
            settled |= {(each.kind, each.value) for each in probed + merged}
            settled |= {(each.kind, None) for each in ranges}
            settled |= {(each.kind, each.value) for each in starting if each.value is not None}
            if first is not None:
                settled.add(first)
        source: Any = (
            walked.join(index_suppliers, index_suppliers.c.supplier == latest.c.supplier)
            .join(index_attestations, attestation.log_index == latest.c.log_index)
            .outerjoin(suppliers, suppliers.c.id == latest.c.supplier)
        )
        for each in starting:
            listed = candidate.in_(each.members())
            if self._postgres:
                # Not a bare IN, which PostgreSQL turns into a semi-join run after every other
                # test; inside IS TRUE it stays a filter, the list read once into a hash and
                # probed first (automotive searches at 100,000 suppliers: mean 142 -> 60 ms).
                listed = listed.is_(true())
            where.append(listed)
        if query.country is not None and ("country", query.country) not in settled:
            where.append(
                self._exists(
                    index_countries.c.log_index == entry,
                    index_countries.c.country == bindparam("country"),
                )
            )
        # The product class before the certificate: it rejects more, and each exact test reads
        # the attestation's own rows (an automotive search at 100,000 suppliers: 20.7 -> 16.6 ms).
        named_class = None if query.classification is None else ":".join(query.classification)
        class_settled = bool({("classification", named_class), ("classification", None)} & settled)
        if query.classification is not None and not class_settled:
            classes = index_classifications.c
            where.append(
                self._exists(
                    classes.log_index == entry,
                    classes.scheme == bindparam("class_scheme"),
                    self._code_is(classes.code, query.classification[1]),
                )
            )
        if query.certification is not None and query.valid_on is not None:
            certificate = index_certifications.c
            valid_on = bindparam("valid_on", type_=certificate.valid_from.type)
            where.append(
                self._exists(
                    certificate.log_index == entry,
                    certificate.scheme == bindparam("certification"),
                    certificate.status == "active",
                    or_(certificate.valid_from.is_(None), certificate.valid_from <= valid_on),
                    or_(certificate.valid_until.is_(None), certificate.valid_until >= valid_on),
                )
            )
        if query.assurance is not None:
            where.append(attestation.assurance_rank >= bindparam("assurance"))
        if query.fresh_since is not None:
            where.append(attestation.issued_at >= bindparam("fresh_since"))
        # The metric tests last: each filter above is one index probe, and rejects first.
        where += self._meets(query, entry)
        key, order = self._order(query, supplier)
        if query.after is not None:
            where.append(self._after(query, key, supplier))
        return (
            select(*columns)
            .select_from(source)
            .where(*where)
            .order_by(*order)
            .limit(bindparam("page", type_=Integer()))  # one more than the page: is there more?
        )

    @staticmethod
    def _order(query: SupplierQuery, supplier: ColumnElement[str]) -> tuple[Any, list[Any]]:
        if query.sort == "name":
            return index_suppliers.c.name, [index_suppliers.c.name, supplier]
        if query.sort == "issued_at":
            return index_attestations.c.issued_at, [index_attestations.c.issued_at, supplier]
        if query.sort == "-issued_at":
            return index_attestations.c.issued_at, [index_attestations.c.issued_at.desc(), supplier]
        return supplier, [supplier]

    @staticmethod
    def _after(query: SupplierQuery, key: Any, supplier: ColumnElement[str]) -> ColumnElement[bool]:
        """Beyond the cursor's hit: its sort key and supplier are parameters (:meth:`_values`)."""
        last: BindParameter[str] = bindparam("after_supplier")
        if query.sort == "supplier":
            return supplier > last
        value = bindparam("after_key", type_=key.type)
        beyond = key < value if query.sort == "-issued_at" else key > value
        return or_(beyond, and_(key == value, supplier > last))

    def run(self, query: SupplierQuery, now: datetime | None = None) -> dict[str, Any]:
        """A page of hits, the checkpoint they verify against, and the next page's cursor."""
        now = now or datetime.now(UTC)
        statement, values = self._search(query)
        with self.log.engine.connect() as connection:
            rows = connection.execute(statement, values).all()
            matches = self._matches(
                connection, query, values, [int(row.log_index) for row in rows[: query.limit]]
            )
            # Read after the search (on SQLite in its snapshot): every entry the index holds
            # is in this checkpoint.
            signed = self.log.latest(connection)
            indexed = self.indexer.position(connection)
        size = 0 if signed is None else signed.checkpoint.size
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        hits = [self._hit(query, row, size, matches[int(row.log_index)]) for row in rows]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            key = {"supplier": last.supplier, "name": last.name}.get(query.sort)
            if query.sort in ("issued_at", "-issued_at"):
                key = _aware(last.issued_at).isoformat()
            next_cursor = encode_cursor(key, last.supplier, query.fingerprint)
        return {
            "checkpoint": None
            if signed is None
            else {"origin": signed.checkpoint.origin, "size": size, "note": signed.note},
            "indexedThrough": indexed,
            "hits": hits,
            "next": next_cursor,
        }

    def _hit(
        self,
        query: SupplierQuery,
        row: Any,
        size: int,
        matches: list[tuple[float | None, float | None, int]],
    ) -> dict[str, Any]:
        index = int(row.log_index)
        hit: dict[str, Any] = {
            "supplier": row.supplier,
            "name": row.name,
            "country": row.country,
            "verification": row.verification or "unverified",
            "logIndex": index,
            "issuedAt": _aware(row.issued_at).isoformat(),
            "feedSequence": int(row.feed_sequence),
            "previousIndex": row.previous_index,
            "assurance": ASSURANCE_ORDER[int(row.assurance_rank)],
            "bundle": f"/api/v1/bundles/{index}",
        }
        if query.conditions:
            hit["matches"] = [
                {
                    "where": condition.given,
                    "metric": condition.metric,
                    "min": _in_unit(low, condition.unit),
                    "max": _in_unit(high, condition.unit),
                    "values": count,
                    "unit": condition.unit,
                }
                for condition, (low, high, count) in zip(query.conditions, matches, strict=True)
            ]
        if query.inline_proofs and index < size:
            hit["proof"] = {
                "treeSize": size,
                "leaf": base64.b64encode(self.log.leaf(index)).decode(),
                "hashes": [
                    base64.b64encode(h).decode() for h in self.log.inclusion_proof(index, size)
                ],
            }
        return {name: value for name, value in hit.items() if name in query.fields}


def _cached(
    statements: dict[tuple[Any, ...], Select[Any]],
    shape: tuple[Any, ...],
    build: Callable[[], Select[Any]],
) -> Select[Any]:
    """The statement of ``shape``, built on first use. Bounded: past 1,000 shapes every one
    is forgotten rather than the cache growing."""
    statement = statements.get(shape)
    if statement is None:
        statement = build()
        if len(statements) >= 1000:
            statements.clear()
        statements[shape] = statement
    return statement


def _after_prefix(prefix: str) -> str:
    """The least string greater than every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _aware(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _in_unit(base_value: float | None, unit: str | None) -> float | None:
    """A base-unit value back in the unit the buyer asked in."""
    if base_value is None or unit is None:
        return base_value
    known = units()[unit]
    return round((base_value - float(known["base_offset"])) / float(known["to_base"]), 12)
