"""The registry's transparency log over SQL: durable sequencing, batched integration into an
RFC 9162 tree, one signed and timestamped checkpoint per batch, proofs, and fsck.

Sequencing commits each entry before it is acknowledged; integration (single writer, under a
database lock) appends a batch to the tree, stores the new perfect subtree hashes, and signs a
checkpoint that extends the previous one, so the log never signs two inconsistent checkpoints.
Integration resumes from the stored state after a crash: nothing sequenced is lost.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import (
    BigInteger,
    Engine,
    Integer,
    Table,
    any_,
    bindparam,
    cast,
    false,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy import Text as TextType
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement, Insert

from sqm.registry.db import (
    NODE_LEVEL_SHIFT,
    last_sequenced,
    log_chain_heads,
    log_checkpoint_stamps,
    log_checkpoints,
    log_entries,
    log_nodes,
    log_pending,
    log_tsa_periods,
    node_key,
    node_of,
    utc,
    write_lock,
    writing,
)
from sqm.registry.driver import Prepared, as_columns, in_pipeline, unnested
from sqm.registry.errors import DamagedStoreError, RegistryError
from sqm.registry.timestampers import OwnTSA, Timestamper, TimestampUnavailableError
from sqm.trust import TrustError, merkle, timestamp
from sqm.trust.bundle import AdditionalTsa, TrustRoot
from sqm.trust.canonical import canonical
from sqm.trust.checkpoint import Checkpoint, NoteVerifier, open_note, sign

Clock = Callable[[], datetime]
K = TypeVar("K")
V = TypeVar("V")

# The write path's statements, built once: building a statement and its cache key on every
# execution cost SQLAlchemy twice the time of executing a prebuilt one.
VERIFIED_CHECKPOINTS = 4096  # checkpoints whose signature a reader remembers having checked
KNOWN_NODES = 1 << 16  # committed subtree hashes a process remembers (about 10 MB)
KNOWN_ENTRIES = 1 << 14  # committed entries (index and leaf) a process remembers

# The statements of a batch's integration run through the driver (registry/driver.py): the
# log's write lock is held while they run, and every worker waits for it.
_SIZE = Prepared(select(func.max(log_entries.c.idx)))
_MOVE_HEAD = Prepared(
    log_chain_heads.update()
    .where(log_chain_heads.c.chain == bindparam("head"))
    .values(last_index=bindparam("index"))
)
_NEW_HEAD = Prepared(log_chain_heads.insert())
_SEQUENCE = Prepared(log_pending.insert().returning(log_pending.c.seq))
_INTEGRATED = Prepared(log_pending.delete().where(log_pending.c.seq == bindparam("done")))
_NEW_ENTRIES = Prepared(log_entries.insert())
_NEW_NODES = Prepared(log_nodes.insert())
_NEW_CHECKPOINT = Prepared(log_checkpoints.insert())


def _integration_writes() -> Insert:
    """PostgreSQL: every write of a batch's integration in one statement, whatever the
    batch's size: its entries, subtrees and chain heads as arrays (data-modifying CTEs over
    ``unnest``), its pending rows deleted, its checkpoint inserted.

    Why: psycopg's executemany sends a statement per row, each with its own Python (its
    parameters adapted, the pipeline fed), a dozen for a typical batch, while the log's write
    lock is held, which every worker waits for. Under the benchmark's load those writes took
    0.69 ms of the lock holder's CPU and 1.5 ms of its wall time; as one statement, 0.41 and
    0.86 (docs/registry.md). The CTEs write distinct tables, or (the chain heads) distinct
    rows of one: a chain is either moved or started, never both."""
    new_entries = unnested(log_entries, "entry_")
    new_nodes = unnested(log_nodes, "node_")
    started = unnested(log_chain_heads, "started_")
    moved = unnested(log_chain_heads, "moved_")
    done = bindparam("entry_seq", type_=postgresql.ARRAY(BigInteger))
    return log_checkpoints.insert().add_cte(
        log_entries.insert()
        .from_select(log_entries.c.keys(), select(*new_entries.c))
        .cte("entries"),
        log_nodes.insert().from_select(log_nodes.c.keys(), select(*new_nodes.c)).cte("nodes"),
        log_chain_heads.insert()
        .from_select(log_chain_heads.c.keys(), select(*started.c))
        .cte("started"),
        log_chain_heads.update()
        .where(log_chain_heads.c.chain == moved.c.chain)
        .values(last_index=moved.c.last_index)
        .cte("moved"),
        log_pending.delete().where(log_pending.c.seq == any_(done)).cte("done"),
    )


_INTEGRATION_WRITES = Prepared(_integration_writes())


class UnmetConditionError(RegistryError):
    """An entry's condition (:class:`EntryRow`) did not hold when it was to be stored:
    neither the entry nor its row was stored."""


class EntryRow:
    """A row of ``table`` that describes a log entry and is stored with it: its ``seq``
    column names the entry (:meth:`TransparencyLog.sequence_later`). On PostgreSQL the
    entry and the row are one statement (the entry's insert a CTE that the row selects its
    number from); elsewhere two, the row taking the entry's number in SQL
    (:class:`~sqm.registry.db.last_sequenced`).

    ``condition``: a boolean SQL expression over other tables, with parameters of its own,
    that must hold when the entry is stored, in the writing transaction (so under the log's
    write lock); when it does not, nothing is stored and reading the entry's number raises
    :class:`UnmetConditionError`. Why: what a request checked against data it read earlier
    (a supplier's key, unrevoked) is confirmed where the entry is written, without a
    statement of its own; on PostgreSQL the condition is part of the one statement.

    Why one statement: a batch's writes run while the log's write lock is held, which every
    worker waits for, and each statement costs the holder its Python in psycopg."""

    def __init__(self, table: Table, condition: ColumnElement[bool] | None = None) -> None:
        names = [column.key for column in table.c if column.key != "seq"]
        entry = {column.key for column in log_pending.c}
        if clash := entry.intersection(names):  # the statement's parameters share one space
            raise RegistryError(f"{table.name} has columns named as an entry's: {clash}")
        self._conditions: frozenset[str] = frozenset()
        self._holds: Prepared | None = None
        if condition is not None:
            self._holds = Prepared(select(literal(1)).where(condition))
            self._conditions = frozenset(select(condition).compile().params)
            if shared := self._conditions.intersection({*entry, *names}):
                raise RegistryError(f"the condition's parameters are named as columns: {shared}")
        columns = ("leaf", "received_at", "chain")
        stored = select(*(bindparam(name, type_=log_pending.c[name].type) for name in columns))
        sequenced = (
            log_pending.insert()
            .from_select(columns, stored if condition is None else stored.where(condition))
            .returning(log_pending.c.seq)
            .cte("entry")
        )
        self._names = frozenset(names)
        values = [bindparam(name, type_=table.c[name].type) for name in names]
        self._together = Prepared(
            table.insert()
            .from_select(["seq", *names], select(sequenced.c.seq, *values))
            .returning(table.c.seq)
        )
        self._apart = Prepared(table.insert().inline().values(seq=last_sequenced()))

    def later(
        self,
        connection: Connection,
        entry: Mapping[str, Any],
        values: Mapping[str, Any],
        condition: Mapping[str, Any] | None = None,
    ) -> Callable[[], list[tuple[Any, ...]]]:
        """Send the entry's insert and the row's, ``values`` naming every column but
        ``seq`` and ``condition`` every parameter of the condition; the entry's number (one
        row) when read, or no row when the condition did not hold."""
        if set(values) != self._names:
            # On PostgreSQL the one statement takes every column; held to that everywhere,
            # a row that works on SQLite works on PostgreSQL.
            given, wanted = sorted(values), sorted(self._names)
            raise RegistryError(f"a row needs exactly the columns {wanted}, got {given}")
        condition = condition or {}
        if set(condition) != self._conditions:
            given, wanted = sorted(condition), sorted(self._conditions)
            raise RegistryError(f"the condition needs exactly the parameters {wanted}, got {given}")
        if connection.dialect.name == "postgresql":
            return self._together.later(connection, {**entry, **values, **condition})
        if self._holds is not None and not self._holds.rows(connection, condition):
            return lambda: []
        sequenced = _SEQUENCE.later(connection, entry)
        self._apart.run(connection, values)
        return sequenced


# On SQLite one statement for any number of keys too: the keys as a JSON array, read by
# json_each. Why not a statement per key: each ran apart, with its own snapshot of the log and
# the driver's Python around it; the 20 of a proof at 1,000,000 entries took 0.25 ms, one
# statement 0.06 (sqlite3 alone: 0.16 against 0.06).
_NODES_JSON = Prepared(
    select(log_nodes.c.node, log_nodes.c.hash).where(
        log_nodes.c.node.in_(
            select(literal_column("value")).select_from(
                func.json_each(bindparam("keys", type_=TextType)).table_valued("value")
            )
        )
    )
)
# On PostgreSQL one round trip for any number of keys (an array parameter).
_NODES_ARRAY = Prepared(
    select(log_nodes.c.node, log_nodes.c.hash).where(
        log_nodes.c.node == any_(bindparam("keys", type_=postgresql.ARRAY(BigInteger)))
    )
)


def _frontier_nodes() -> Prepared:
    """PostgreSQL: the stored perfect subtrees on the tree's right edge (see
    :meth:`TransparencyLog._frontier`), the tree's size read in the statement itself, so
    that it can be sent with integration's read and answered in the same round trip. For a
    set bit ``level`` of the size, the subtree at that level starts where the bits above it
    end: index ``(size >> (level + 1)) << 1``."""

    def number(value: int) -> Any:  # PostgreSQL shifts a bigint by an integer only
        # Written into the SQL, not bound: a statement with parameters is planned afresh on
        # every run (custom plans), which took the server 135 µs here, against 20 µs to run
        # it, inside the log's lock; without any, the first plan serves every run.
        return literal_column(str(int(value)), Integer)

    level = func.generate_series(number(0), number(NODE_LEVEL_SHIFT - 1)).column_valued("level")
    size = select(
        func.coalesce(func.max(log_entries.c.idx) + number(1), number(0))
    ).scalar_subquery()
    key = (
        cast(level, BigInteger)
        .op("<<")(number(NODE_LEVEL_SHIFT))
        .op("|")(size.op(">>")(level + number(1)).op("<<")(number(1)))
    )
    keys = (
        select(key.label("key"))
        .where(size.op(">>")(level).op("&")(number(1)) == number(1))
        .subquery()
    )
    return Prepared(
        select(log_nodes.c.node, log_nodes.c.hash).join(keys, log_nodes.c.node == keys.c.key)
    )


_FRONTIER_NODES = _frontier_nodes()
_ENTRIES_BY_SEQ = select(log_entries.c.seq, log_entries.c.idx, log_entries.c.leaf).where(
    log_entries.c.seq.in_(bindparam("seqs", expanding=True))
)


@functools.cache
def _pending(limit: int, further: tuple[str, ...]) -> Prepared:
    """What integration reads, in one statement: the entries waiting, in sequence order, each
    with the index of its chain's newest entry (NULL: none yet, or no chain), and the tree's
    largest index (NULL: empty), and how many further TSAs the log requires now, in all and
    among ``further`` (the SHA-256s of this process's further TSAs' CAs). Why one: on
    PostgreSQL each statement is a round trip, and on busy cores one took 0.7-3 ms while the
    log's lock was held (the server waits to be scheduled); three reads were a third of
    integration's round trips."""
    return Prepared(
        select(
            log_pending.c.seq,
            log_pending.c.leaf,
            log_pending.c.chain,
            log_chain_heads.c.last_index,
            select(func.max(log_entries.c.idx)).scalar_subquery(),
            select(func.count())
            .select_from(log_tsa_periods)
            .where(log_tsa_periods.c.last_size.is_(None))
            .scalar_subquery(),
            select(func.count())
            .select_from(log_tsa_periods)
            .where(
                log_tsa_periods.c.last_size.is_(None),
                # Hex digits only (SHA-256s), written in: no parameter, as the LIMIT below.
                log_tsa_periods.c.ca_sha256.in_([literal_column(f"'{f}'") for f in further])
                if further
                else false(),
            )
            .scalar_subquery(),
        )
        .select_from(
            log_pending.outerjoin(log_chain_heads, log_chain_heads.c.chain == log_pending.c.chain)
        )
        .order_by(log_pending.c.seq)
        .limit(literal_column(str(int(limit)), Integer))  # no parameter: see _frontier_nodes
    )


def _read_nodes(connection: Connection, keys: list[int]) -> dict[int, bytes]:
    """The stored hashes of the subtrees ``keys`` (:func:`node_key`) that exist."""
    if connection.dialect.name == "postgresql":
        found: dict[int, bytes] = {}
        for start in range(0, len(keys), 500):
            rows = _NODES_ARRAY.rows(connection, {"keys": keys[start : start + 500]})
            found.update({int(key): bytes(value) for key, value in rows})
        return found
    rows = _NODES_JSON.rows(connection, {"keys": json.dumps(keys)})
    return {int(key): bytes(value) for key, value in rows}


def _recalled(memory: dict[K, V], wanted: Iterable[K]) -> tuple[dict[K, V], list[K]]:
    """What ``memory`` holds of ``wanted``, and the rest, in order."""
    found: dict[K, V] = {}
    missing: list[K] = []
    for key in wanted:
        known = memory.get(key)
        if known is None:
            missing.append(key)
        else:
            found[key] = known
    return found, missing


class _Recorder:
    """A stand-in store that records which subtree hashes a proof needs."""

    def __init__(self) -> None:
        self.wanted: set[tuple[int, int]] = set()

    def perfect(self, level: int, index: int) -> bytes:
        self.wanted.add((level, index))
        return bytes(merkle.HASH_SIZE)


class _Fetched:
    """Subtree hashes fetched in one query."""

    def __init__(self, hashes: dict[tuple[int, int], bytes]) -> None:
        self.hashes = hashes

    def perfect(self, level: int, index: int) -> bytes:
        try:
            return self.hashes[(level, index)]
        except KeyError:
            raise DamagedStoreError(
                f"subtree ({level}, {index}) is missing from the log's stored hashes; "
                "`sqm registry fsck` reports what else is"
            ) from None


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as the log signed it, with its RFC 3161 token."""

    checkpoint: Checkpoint
    note: str
    timestamp: bytes
    additional_timestamps: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Integration:
    """One batch appended to the tree: its signed checkpoint and, by sequence number, the
    index and final leaf bytes of every entry it integrated."""

    signed: SignedCheckpoint
    entries: dict[int, tuple[int, bytes]]
    nodes: dict[tuple[int, int], bytes]  # the perfect subtrees the batch completed


class TransparencyLog:
    """The log over a database engine; the origin names it and the key signs its checkpoints."""

    def __init__(
        self,
        engine: Engine,
        origin: str,
        key: Ed25519PrivateKey,
        authority: timestamp.Authority,
        clock: Clock = lambda: datetime.now(UTC),
        timestampers: Sequence[Timestamper] | None = None,
        remembered_nodes: int = KNOWN_NODES,
    ) -> None:
        """``timestampers`` stamp every checkpoint, the first one's token being the primary
        (default: the registry's own TSA, ``authority``). ``remembered_nodes``: how many
        committed subtree hashes the process keeps for proofs (0: every proof reads them)."""
        self.engine = engine
        self.origin = origin
        self.key = key
        self.authority = authority
        self.clock = clock
        self.timestampers: tuple[Timestamper, ...] = tuple(
            timestampers or (OwnTSA(authority, lambda: self.clock()),)
        )
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = NoteVerifier(origin, raw)
        # Checkpoints read, by their note and token: a checkpoint's row and its additional
        # tokens commit together and never change, so a reader that finds the same row again
        # needs neither the signature check nor the tokens' query. Every search, bundle and
        # page reads the newest (0.6 ms each), and every bundle the first holding its entry
        # (a quarter of a bundle at 1,000,000 entries). Bounded; cleared whole when full.
        self._verified: dict[tuple[str, bytes], SignedCheckpoint] = {}
        # Committed subtree hashes and entries: once committed, neither ever changes (the
        # log only appends, with one writer), so a proof that finds all it needs here reads
        # nothing. Why: a submission's bundle proves its own entry and its key's entry at
        # the new size, whose paths are almost all subtrees of recent batches; reading them
        # took a connection and two queries per submission. Only what a committed
        # transaction holds enters (reads, and batches after their commit: :meth:`remember`),
        # never what a transaction that may roll back wrote. Bounded; cleared whole when full.
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._entries: dict[int, tuple[int, bytes]] = {}
        self.remembered_nodes = remembered_nodes
        self._tsa_periods: tuple[AdditionalTsa, ...] | None = None
        self._further = tuple(_ca_sha256(t.ca_certificate) for t in self.timestampers[1:])

    def remember(self, integration: Integration) -> None:
        """Keep a committed batch's entries and subtree hashes for later proofs. Call it only
        once the transaction that wrote them has committed."""
        self._remember_nodes(integration.nodes)
        self._remember_entries(integration.entries)

    def _remember_nodes(self, nodes: dict[tuple[int, int], bytes]) -> None:
        if not self.remembered_nodes:
            return
        if len(self._nodes) + len(nodes) > self.remembered_nodes:
            self._nodes.clear()
        self._nodes.update(nodes)

    def _remember_entries(self, entries: dict[int, tuple[int, bytes]]) -> None:
        if len(self._entries) + len(entries) > KNOWN_ENTRIES:
            self._entries.clear()
        self._entries.update(entries)

    def reading(self) -> Connection:
        """A connection for reads. On PostgreSQL each statement is its own transaction. Why:
        there a read in a transaction costs a second round trip, the ROLLBACK when the
        connection goes back to the pool; the log is append-only, so one statement sees a
        consistent state, and a proof is one statement. On SQLite the engine's ``begin``
        hook still opens a (deferred) transaction for reads through SQLAlchemy, which then
        share one snapshot; statements run through the driver (:class:`Prepared`) read
        outside it, each on its own."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    # --- writing ----------------------------------------------------------------------------

    @contextmanager
    def writing(self, exclusive: bool = False) -> Iterator[Connection]:
        """A write transaction (:func:`sqm.registry.db.writing`). ``exclusive``: as the log's
        single writer from the start (PostgreSQL: its advisory lock), so that the transaction
        may also integrate (:meth:`append`)."""
        with writing(self.engine) as connection:
            if exclusive:
                write_lock(connection)
            yield connection

    def sequence(
        self, leaf: bytes, chain: str | None = None, connection: Connection | None = None
    ) -> int:
        """Store an entry durably (committed before this returns); its sequence number.

        With ``connection``, the entry is written in that transaction, so it commits or rolls
        back together with the rows that describe it. With ``chain``, ``leaf`` is a JSON object
        that integration completes with ``"previousIndex"``: the index of the chain's previous
        entry (or null), so that a chain's entries link in log order however many writers
        submit at once.
        """
        if connection is None:
            with self.writing() as own:
                return self.sequence(leaf, chain, own)
        return self.sequence_later(leaf, chain, connection)()

    def sequence_later(
        self,
        leaf: bytes,
        chain: str | None,
        connection: Connection,
        described: tuple[EntryRow, Mapping[str, Any]] | None = None,
        condition: Mapping[str, Any] | None = None,
    ) -> Callable[[], int]:
        """:meth:`sequence` in ``connection``'s transaction without waiting for the answer:
        the entry's sequence number when the returned function is called (in a
        :func:`pipelined` block, that waits for the answer). ``described``: a row that
        describes the entry, stored with it (:class:`EntryRow`, and the row's other values);
        ``condition``: the parameters of that row's condition, when it has one (then the
        returned function raises :class:`UnmetConditionError` if it did not hold)."""
        entry = {"leaf": leaf, "received_at": utc(self.clock()), "chain": chain}
        if described is None:
            rows = _SEQUENCE.later(connection, entry)
        else:
            row, values = described
            rows = row.later(connection, entry, values, condition)

        def number() -> int:
            found = rows()
            if not found:
                raise UnmetConditionError("the entry's condition did not hold: nothing stored")
            return int(found[0][0])

        return number

    def integrate(self, limit: int = 10_000) -> SignedCheckpoint | None:
        """Append up to ``limit`` sequenced entries, in sequence order, and sign a checkpoint.
        None when nothing was waiting."""
        with self.writing(exclusive=True) as connection:
            done = self._integrate(connection, limit)
        if done is None:
            return None
        self.remember(done)  # committed: the block above ended without an error
        return done.signed

    def append(self, connection: Connection, limit: int = 10_000) -> Integration | None:
        """Integrate what waits, within ``connection``'s transaction, which must be
        :meth:`writing` ``(exclusive=True)``: an entry sequenced in it commits already in
        the tree, with one commit; None when nothing waits (every entry of the transaction
        refused by its condition, say). When a TSA fails (TimestampUnavailableError), the
        batch has written nothing: the transaction's own rows stay, and commit unlogged."""
        return self._integrate(connection, limit)

    def _integrate(self, connection: Connection, limit: int) -> Integration | None:
        # Everything still pending, whatever its sequence number: on PostgreSQL a smaller
        # number may commit after a larger one was integrated.
        waiting = _pending(limit, self._further).later(connection)
        # In a pipeline the right edge's subtrees are asked for in the same round trip (the
        # other workers' batches add those that this process does not remember); outside
        # one, only those it does not remember are read, and only when some are missing.
        edge = _FRONTIER_NODES.later(connection) if in_pipeline(connection) else None
        pending = waiting()
        read = {} if edge is None else {node_of(int(k)): bytes(v) for k, v in edge()}
        self._remember_nodes(read)  # committed: the lock keeps other writers out
        if not pending:
            return None
        top, required, mine = pending[0][4], int(pending[0][5]), int(pending[0][6])
        if not required == mine == len(self._further):
            # Another process started with other TSA settings (a rolling restart, a host
            # configured apart), or this one's TSA was retired under it: its checkpoints would
            # lack a token the trust root requires, or it would serve a trust root without the
            # requirement. Nothing is signed; the entries wait for a process with the log's
            # settings.
            self._tsa_periods = None
            raise TimestampUnavailableError(
                f"the log requires {required} further TSA(s) now, {mine} of them among the "
                f"{len(self._further)} this registry process stamps with: another process "
                "started with other TSA settings; restart every process with the same "
                "SQM_REGISTRY_TSA_* settings"
            )
        size = 0 if top is None else int(top) + 1
        frontier = self._frontier(connection, size, read)
        rows = [(seq, raw, chain) for seq, raw, chain, *_ in pending]
        chains = {chain for _, _, chain in rows if chain is not None}
        heads = {chain: int(head) for _, _, chain, head, *_ in pending if head is not None}
        known_heads = set(heads)
        new_entries: list[dict[str, Any]] = []
        integrated: dict[int, tuple[int, bytes]] = {}
        new_subtrees: list[dict[str, Any]] = []
        completed: dict[tuple[int, int], bytes] = {}
        for offset, (seq, raw, chain) in enumerate(rows):
            index = size + offset
            leaf = bytes(raw)
            if chain is not None:
                leaf = canonical({**json.loads(leaf), "previousIndex": heads.get(chain)})
                heads[chain] = index
            hashed = merkle.leaf_hash(leaf)
            integrated[seq] = (index, leaf)
            new_entries.append({"idx": index, "seq": seq, "leaf": leaf, "leaf_hash": hashed})
            frontier[(0, index)] = completed[(0, index)] = hashed
            new_subtrees.append({"node": node_key(0, index), "hash": hashed})
            level, position = 0, index
            while position & 1:  # this leaf completes a perfect subtree one level up
                parent = merkle.node_hash(
                    frontier[(level, position - 1)], frontier[(level, position)]
                )
                level, position = level + 1, position >> 1
                frontier[(level, position)] = completed[(level, position)] = parent
                new_subtrees.append({"node": node_key(level, position), "hash": parent})
        new_size = size + len(rows)
        root = merkle.root(_Fetched(frontier), new_size)
        # Signed and stamped before anything is written: when a TSA fails, this batch has
        # changed nothing, and the caller's transaction keeps its own rows.
        signed = self._sign(new_size, root)
        moved = [{"chain": c, "last_index": heads[c]} for c in sorted(chains) if c in known_heads]
        started = [{"chain": c, "last_index": heads[c]} for c in sorted(chains - known_heads)]
        checkpoint = {
            "size": new_size,
            "note": signed.note,
            "timestamp": signed.timestamp,
            "created_at": utc(self.clock()),
        }
        if connection.dialect.name == "postgresql":
            _INTEGRATION_WRITES.run(
                connection,
                checkpoint
                | as_columns(log_entries, "entry_", new_entries)
                | as_columns(log_nodes, "node_", new_subtrees)
                | as_columns(log_chain_heads, "started_", started)
                | as_columns(log_chain_heads, "moved_", moved),
            )
        else:  # sqlite3's executemany runs its rows in C
            _NEW_ENTRIES.many(connection, new_entries)
            _NEW_NODES.many(connection, new_subtrees)
            _INTEGRATED.many(connection, [{"done": seq} for seq, _, _ in rows])
            _MOVE_HEAD.many(
                connection, [{"head": m["chain"], "index": m["last_index"]} for m in moved]
            )
            _NEW_HEAD.many(connection, started)
            _NEW_CHECKPOINT.run(connection, checkpoint)
        if signed.additional_timestamps:
            connection.execute(
                log_checkpoint_stamps.insert(),
                [
                    {"size": new_size, "position": position, "timestamp": token}
                    for position, token in enumerate(signed.additional_timestamps, 1)
                ],
            )
        return Integration(signed, integrated, completed)

    def _frontier(
        self, connection: Connection, size: int, read: dict[tuple[int, int], bytes]
    ) -> dict[tuple[int, int], bytes]:
        """The perfect subtrees on the tree's right edge: what new leaves hash with (those in
        ``read`` taken from there, the others remembered or read)."""
        wanted = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size & (1 << level):
                wanted.append((level, start >> level))
                start += 1 << level
        known = {subtree: read[subtree] for subtree in wanted if subtree in read}
        return known | self._fetch(connection, [s for s in wanted if s not in known])

    def _sign(self, size: int, root: bytes) -> SignedCheckpoint:
        checkpoint = Checkpoint(self.origin, size, root)
        note = sign(checkpoint, self.origin, self.key)
        serial = size  # one token per checkpoint; the size is unique per signed checkpoint
        # Any TSA failing aborts the batch (rolled back, retried later): every checkpoint
        # carries every configured TSA's token.
        tokens = [tsa.stamp(note.encode(), serial) for tsa in self.timestampers]
        return SignedCheckpoint(checkpoint, note, tokens[0], tuple(tokens[1:]))

    # --- reading ----------------------------------------------------------------------------

    def _size(self, connection: Connection) -> int:
        top = _SIZE.scalar(connection)
        return 0 if top is None else int(top) + 1

    def waiting(self) -> int:
        """How many sequenced entries are not in the tree yet."""
        with self.reading() as connection:
            return int(
                connection.execute(select(func.count()).select_from(log_pending)).scalar() or 0
            )

    def size(self) -> int:
        with self.reading() as connection:
            return self._size(connection)

    def _fetch(
        self, connection: Connection | None, wanted: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """The subtree hashes ``wanted`` (those the log holds): remembered ones, then the
        rest through ``connection`` (a reading one when None and needed; see
        :func:`_read_nodes`). What it reads is committed, so it is remembered too."""
        found, missing = _recalled(self._nodes, wanted)
        if not missing:
            return found
        if connection is None:
            with self.reading() as own:
                return found | self._fetch(own, missing)
        keys = [node_key(level, index) for level, index in missing]
        fetched = {node_of(key): value for key, value in _read_nodes(connection, keys).items()}
        self._remember_nodes(fetched)
        return found | fetched

    def _proof(self, make: Callable[[Any], list[bytes]]) -> list[bytes]:
        # Two passes: learn which subtree hashes the proof needs, fetch them in one query.
        recorder = _Recorder()
        make(recorder)
        return make(_Fetched(self._fetch(None, recorder.wanted)))

    def proofs(
        self,
        inclusions: Sequence[tuple[int, int]],
        consistencies: Sequence[tuple[int, int]] = (),
        connection: Connection | None = None,
    ) -> tuple[list[list[bytes]], list[list[bytes]]]:
        """Inclusion proofs ``(index, size)`` and consistency proofs ``(old, new)``, all from
        one fetch of the subtree hashes they need (through ``connection`` when given)."""

        def make(store: Any) -> list[list[bytes]]:
            return [merkle.inclusion_proof(store, i, n) for i, n in inclusions] + [
                merkle.consistency_proof(store, old, new) for old, new in consistencies
            ]

        recorder = _Recorder()
        make(recorder)
        made = make(_Fetched(self._fetch(connection, recorder.wanted)))
        return made[: len(inclusions)], made[len(inclusions) :]

    def entries_by_seq(
        self, seqs: Iterable[int], connection: Connection | None = None
    ) -> dict[int, tuple[int, bytes]]:
        """``seq -> (log index, leaf)`` of the integrated entries among ``seqs``: remembered
        ones, then the rest in one query (through a reading connection when none is given)."""
        found, missing = _recalled(self._entries, seqs)
        if not missing:
            return found
        if connection is None:
            with self.reading() as own:
                return found | self.entries_by_seq(missing, own)
        rows = connection.execute(_ENTRIES_BY_SEQ, {"seqs": missing})
        fetched = {int(seq): (int(idx), bytes(leaf)) for seq, idx, leaf in rows}
        self._remember_entries(fetched)
        return found | fetched

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path of entry ``index`` in the tree of ``size`` entries."""
        # A size beyond the log needs nodes that do not exist: _Fetched says so (one query).
        return self._proof(lambda store: merkle.inclusion_proof(store, index, size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The proof that the tree of ``new_size`` extends the tree of ``old_size``."""
        return self._proof(lambda store: merkle.consistency_proof(store, old_size, new_size))

    def root(self, size: int) -> bytes:
        return self._proof(lambda store: [merkle.root(store, size)])[0]

    def leaf(self, index: int) -> bytes:
        with self.reading() as connection:
            value = connection.execute(
                select(log_entries.c.leaf).where(log_entries.c.idx == index)
            ).scalar()
        if value is None:
            raise RegistryError(f"no entry {index}")
        return bytes(value)

    def first_holding(self, index: int, connection: Connection | None = None) -> SignedCheckpoint:
        """The first checkpoint whose tree holds entry ``index``: when it was logged."""
        if connection is None:
            with self.reading() as own:
                return self.first_holding(index, own)
        row = connection.execute(
            select(log_checkpoints.c.note, log_checkpoints.c.timestamp)
            .where(log_checkpoints.c.size > index)
            .order_by(log_checkpoints.c.size)
            .limit(1)
        ).first()
        if row is None:
            raise RegistryError(f"no checkpoint holds entry {index} yet")
        return self._signed(row, connection)

    def _signed(self, row: Any, connection: Connection) -> SignedCheckpoint:
        """The checkpoint of a ``log_checkpoints`` row, its signature checked, with its
        additional tokens (remembered while the row is unchanged)."""
        key = (str(row[0]), bytes(row[1]))
        known = self._verified.get(key)
        if known is not None:
            return known
        note, token = row
        checkpoint = open_note(note, self.verifier)
        extra = connection.execute(
            select(log_checkpoint_stamps.c.timestamp)
            .where(log_checkpoint_stamps.c.size == checkpoint.size)
            .order_by(log_checkpoint_stamps.c.position)
        ).scalars()
        additional = tuple(bytes(t) for t in extra)
        signed = SignedCheckpoint(checkpoint, note, bytes(token), additional)
        if len(self._verified) >= VERIFIED_CHECKPOINTS:
            self._verified.clear()
        self._verified[key] = signed
        return signed

    def latest(self, connection: Connection | None = None) -> SignedCheckpoint | None:
        """The newest signed checkpoint (read through ``connection`` when given)."""
        if connection is None:
            with self.reading() as own:
                return self.latest(own)
        row = connection.execute(
            select(log_checkpoints.c.note, log_checkpoints.c.timestamp)
            .order_by(log_checkpoints.c.size.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return self._signed(row, connection)

    def trust_root(self) -> TrustRoot:
        """What verifiers of this log trust: its origin and key, and its TSAs' CAs, with the
        stretch of the log each further TSA must stamp (retired ones too: their tokens still
        date the checkpoints of their stretch)."""
        ca = self.timestampers[0].ca_certificate
        return TrustRoot(
            self.origin, self.verifier, ca, ca.not_valid_before_utc.isoformat(), None,
            self.tsa_periods(),
        )  # fmt: skip

    def start_tsa_requirements(self) -> None:
        """Record that each further TSA this process stamps with, and no stretch of the log
        requires yet, must stamp every checkpoint from the next tree size on (this process
        stamps each of its checkpoints with it; a submission waits for the TSA otherwise).
        Call it at start, before the first checkpoint. RegistryError when the log requires
        a further TSA this process is not configured with: its checkpoints would lack that
        TSA's tokens and fail verification; configure it, or end the requirement
        (:meth:`retire_tsa`)."""
        configured = {_ca_sha256(tsa.ca_certificate): tsa for tsa in self.timestampers[1:]}
        with self.writing(exclusive=True) as connection:  # one start at a time, no batch between
            size = _checkpointed_size(connection)
            running = {
                str(fingerprint): int(first)
                for fingerprint, first in connection.execute(
                    select(log_tsa_periods.c.ca_sha256, log_tsa_periods.c.first_size).where(
                        log_tsa_periods.c.last_size.is_(None)
                    )
                )
            }
            missing = sorted(set(running) - set(configured))
            if missing:
                raise RegistryError(
                    f"the log requires the tokens of further TSAs this registry is not "
                    f"configured with (CA SHA-256 {', '.join(missing)}) of every checkpoint "
                    f"from tree size {min(running[m] for m in missing)} on: configure it "
                    "(SQM_REGISTRY_TSA_URL, SQM_REGISTRY_TSA_CA, SQM_REGISTRY_TSA_MODE=also), or, "
                    "to stop using it or make it the primary TSA (instead), first end the "
                    f"requirement with the registry stopped: sqm registry retire-tsa {missing[0]} "
                    "(with the --data or --database the registry runs with)"
                )
            for fingerprint, tsa in configured.items():
                if fingerprint in running:
                    continue
                # A stretch of this TSA that ended at the newest checkpoint goes on, unbroken.
                reopened = connection.execute(
                    log_tsa_periods.update()
                    .where(
                        log_tsa_periods.c.ca_sha256 == fingerprint,
                        log_tsa_periods.c.last_size == size,
                    )
                    .values(last_size=None)
                ).rowcount
                if not reopened:
                    connection.execute(
                        log_tsa_periods.insert().values(
                            ca_sha256=fingerprint,
                            first_size=size + 1,
                            last_size=None,
                            ca_pem=_pem(tsa.ca_certificate),
                        )
                    )
        self._tsa_periods = None

    def retire_tsa(self, fingerprint: str) -> int:
        """End the requirement of the further TSA whose CA has SHA-256 ``fingerprint``: the
        checkpoints logged from now on need not carry its tokens. The last tree size it had
        to stamp; RegistryError when no running requirement names it. Run it with the
        registry stopped, then start the registry without that TSA."""
        with self.writing(exclusive=True) as connection:
            size = _checkpointed_size(connection)
            running = (
                log_tsa_periods.c.ca_sha256 == fingerprint,
                log_tsa_periods.c.last_size.is_(None),
            )
            # A stretch that no checkpoint reached was never required of any: it goes.
            unused = connection.execute(
                log_tsa_periods.delete().where(*running, log_tsa_periods.c.first_size > size)
            ).rowcount
            ended = (
                unused
                or connection.execute(
                    log_tsa_periods.update().where(*running).values(last_size=size)
                ).rowcount
            )
        if not ended:
            open_ones = ", ".join(str(t.ca_sha256) for t in self._open_stretches()) or "none"
            raise RegistryError(
                f"no further TSA whose CA has SHA-256 {fingerprint} is required (required now: "
                f"{open_ones})"
            )
        self._tsa_periods = None
        return size

    def _open_stretches(self) -> list[Any]:
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(log_tsa_periods.c.ca_sha256).where(log_tsa_periods.c.last_size.is_(None))
                )
            )

    def tsa_periods(self) -> tuple[AdditionalTsa, ...]:
        """Every further TSA the log requires or required, with its stretch of tree sizes,
        in the order they began (remembered: they change only at a start or a retirement)."""
        if self._tsa_periods is None:
            with self.engine.connect() as connection:
                self._tsa_periods = _tsa_periods(connection)
        return self._tsa_periods

    # --- checking -----------------------------------------------------------------------------

    def fsck(self) -> list[str]:
        """Recompute the tree from the stored entries and check every stored subtree hash and
        every checkpoint; the problems found (empty when the log is intact)."""
        problems: list[str] = []
        tree = merkle.MemoryTree()
        # One transaction and one snapshot for the whole check while writers go on (SQLite's
        # is the transaction's; PostgreSQL's, at READ COMMITTED, would be each statement's).
        with self.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            streamed = connection.execution_options(stream_results=True, yield_per=1000)
            for index, leaf, stored in streamed.execute(
                select(log_entries.c.idx, log_entries.c.leaf, log_entries.c.leaf_hash).order_by(
                    log_entries.c.idx
                )
            ):
                if index != tree.size:
                    problems.append(f"entry {tree.size} is missing (next stored entry is {index})")
                    break
                hashed = merkle.leaf_hash(bytes(leaf))
                if hashed != bytes(stored):
                    problems.append(f"entry {index}: stored leaf hash does not match its leaf")
                tree.append_hash(hashed)
            stored_nodes = streamed.execute(
                select(log_nodes.c.node, log_nodes.c.hash).order_by(log_nodes.c.node)
            )
            missing = 0
            for level, idx, stored in _merged_nodes(tree.size, stored_nodes):
                if stored is None:  # proofs through it would fail: the row was dropped
                    missing += 1
                    if missing <= 20:
                        problems.append(f"subtree ({level}, {idx}) is missing")
                    continue
                try:
                    expected = tree.perfect(level, idx)
                except TrustError:
                    problems.append(f"subtree ({level}, {idx}) has no entries under it")
                    continue
                if bytes(stored) != expected:
                    problems.append(f"subtree ({level}, {idx}) does not match its entries")
            if missing > 20:
                problems.append(f"... and {missing - 20} more subtrees are missing")
            newest = connection.execute(select(func.max(log_checkpoints.c.size))).scalar()
            if tree.size and (newest or 0) != tree.size:
                # Each batch commits with its checkpoint: the newest one covers every entry.
                problems.append(
                    f"the newest checkpoint is of size {newest}, but the log holds "
                    f"{tree.size} entries: a checkpoint row was dropped"
                )
            periods = _tsa_periods(connection)
            for period in periods:
                last = period.required_until_size
                if (
                    period.required_from_size is None
                    or period.required_from_size < 1
                    or (last is not None and last < period.required_from_size)
                ):
                    problems.append(
                        f"the stretch of the further TSA {period.ca.subject.rfc4514_string()!r} "
                        f"is {period.required_from_size} to {last}: it must start at 1 or later "
                        "and end no earlier, or the trust root cannot be read"
                    )
            known = {_ca_sha256(t.ca): t.ca for t in periods} | {
                _ca_sha256(t.ca_certificate): t.ca_certificate for t in self.timestampers[1:]
            }
            checkpoints = (
                select(
                    log_checkpoints.c.size, log_checkpoints.c.note, log_checkpoints.c.timestamp,
                    log_checkpoint_stamps.c.position, log_checkpoint_stamps.c.timestamp,
                )
                .select_from(
                    log_checkpoints.outerjoin(
                        log_checkpoint_stamps, log_checkpoint_stamps.c.size == log_checkpoints.c.size
                    )
                )
                .order_by(log_checkpoints.c.size, log_checkpoint_stamps.c.position)
            )  # fmt: skip
            for size, rows in itertools.groupby(streamed.execute(checkpoints), lambda r: r[0]):
                first, *others = list(rows)
                note = first[1]
                try:
                    checkpoint = open_note(note, self.verifier)
                    timestamp.verify(
                        bytes(first[2]), note.encode(), self.timestampers[0].ca_certificate
                    )
                except TrustError as exc:
                    problems.append(f"checkpoint {size}: {exc}")
                    continue
                if checkpoint.size != size or size > tree.size:
                    problems.append(f"checkpoint {size}: size does not match the log")
                elif checkpoint.root != tree.root(size):
                    problems.append(f"checkpoint {size}: root does not match the entries")
                stamped: set[str] = set()  # the CAs whose TSAs' tokens it carries
                for _, _, _, position, token in [first, *others]:
                    if position is None:
                        continue
                    issuer, failures = _issuer(bytes(token), note, known)
                    if issuer is None and known:
                        # Not of a TSA the trust root lists (verify ignores it), or damaged.
                        problems.append(
                            f"checkpoint {size}: additional timestamp {position} verifies with "
                            f"no TSA this registry uses or used: {'; '.join(failures)}"
                        )
                    stamped.add(issuer or "")
                for period in periods:
                    if period.required_at(size) and _ca_sha256(period.ca) not in stamped:
                        problems.append(
                            f"checkpoint {size}: no token of the further TSA "
                            f"{period.ca.subject.rfc4514_string()!r}, which the trust root "
                            f"requires of every checkpoint {period.describe_requirement()}"
                        )
            integrated = connection.execute(
                select(func.count())
                .select_from(log_pending)
                .join(log_entries, log_entries.c.seq == log_pending.c.seq)
            ).scalar()
            if integrated:
                problems.append(f"{integrated} pending entries are in the tree already")
        return problems


def _ca_sha256(ca: x509.Certificate) -> str:
    return hashlib.sha256(ca.public_bytes(Encoding.DER)).hexdigest()


def _pem(ca: x509.Certificate) -> str:
    return ca.public_bytes(Encoding.PEM).decode()


def _checkpointed_size(connection: Connection) -> int:
    """The tree size of the newest checkpoint (0 before the first)."""
    return int(connection.execute(select(func.max(log_checkpoints.c.size))).scalar() or 0)


def _tsa_periods(connection: Connection) -> tuple[AdditionalTsa, ...]:
    """The further TSAs' stretches of the log (:meth:`TransparencyLog.start_tsa_requirements`)."""
    rows = connection.execute(
        select(
            log_tsa_periods.c.ca_pem, log_tsa_periods.c.first_size, log_tsa_periods.c.last_size
        ).order_by(log_tsa_periods.c.first_size, log_tsa_periods.c.ca_sha256)
    )
    return tuple(
        AdditionalTsa(
            x509.load_pem_x509_certificate(str(pem).encode()),
            int(first),
            None if last is None else int(last),
        )
        for pem, first, last in rows
    )


def _issuer(
    token: bytes, note: str, known: Mapping[str, x509.Certificate]
) -> tuple[str | None, list[str]]:
    """The SHA-256 of the CA, among ``known``, whose TSA issued ``token`` over ``note``
    (None: none did), and why the others' checks failed."""
    failures = []
    for fingerprint, ca in known.items():
        try:
            timestamp.verify(token, note.encode(), ca)
        except TrustError as exc:
            failures.append(str(exc))
            continue
        return fingerprint, failures
    return None, failures


def _merged_nodes(size: int, stored: Iterable[Any]) -> Iterator[tuple[int, int, bytes | None]]:
    """``(level, index, stored hash)`` for every subtree a tree of ``size`` entries stores (the
    hash None where its row is missing) and every stored one (in ``log_nodes`` key order),
    merged in key order."""

    def expected() -> Iterator[int]:
        level = 0
        while size >> level:
            for index in range(size >> level):
                yield node_key(level, index)
            level += 1

    wanted = expected()
    want = next(wanted, None)
    for node, hashed in stored:
        node = int(node)
        while want is not None and want < node:
            yield (*node_of(want), None)
            want = next(wanted, None)
        if want == node:
            want = next(wanted, None)
        yield (*node_of(node), bytes(hashed))
    while want is not None:
        yield (*node_of(want), None)
        want = next(wanted, None)
