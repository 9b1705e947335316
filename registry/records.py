"""The registry's tables checked against the log entries that record them.

The registry answers from its tables: a submission is checked against the keys and
revocations in ``supplier_keys``, bundles are built from the envelopes in ``attestations``. The
log is what anyone can verify, so every such row must be what a leaf says, and every leaf of
those kinds must have its row: a key un-revoked in its table, or an envelope changed in its
column, would otherwise pass unnoticed while the tree itself stays intact
(:meth:`TransparencyLog.fsck` checks the tree; ``sqm registry fsck`` runs both).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, exists, or_, select
from sqlalchemy.engine import Connection, RowMapping

from sqm.registry.db import (
    attestations,
    endorsements,
    envelope_of,
    log_chain_heads,
    log_entries,
    log_pending,
    supplier_keys,
    suppliers,
    utc,
)
from sqm.registry.errors import DamagedStoreError
from sqm.trust import bundle, dsse
from sqm.trust.canonical import canonical

# Registries before 2026-12 read the clock twice, for a key's leaf and then, once the write
# lock was theirs, for its row: the row may be later than the leaf by as long as a write waits.
ROW_LAG = timedelta(minutes=10)
# Enough to find and mend what is wrong; a count tells how much more there is.
MAX_REPORTED = 20
STREAM_ROWS = 500


class _Problems:
    """Problems found, each kind reported up to MAX_REPORTED times, then counted."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self._counts: dict[str, int] = {}

    def add(self, kind: str, text: str) -> None:
        count = self._counts[kind] = self._counts.get(kind, 0) + 1
        if count <= MAX_REPORTED:
            self.found.append(text)

    def done(self) -> list[str]:
        for kind, count in self._counts.items():
            if count > MAX_REPORTED:
                self.found.append(f"... and {count - MAX_REPORTED} more of: {kind}")
        return self.found


def check_records(engine: Engine) -> list[str]:
    """Where the registry's tables disagree with the log entries they record: each key,
    revocation, attestation and endorsement row against its leaf, each such leaf against its
    row, rows that no entry (integrated or pending) records, and each supplier's chain of
    attestations. Empty when they agree. Reads one snapshot of the database."""
    problems = _Problems()
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":  # one snapshot for every query below
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        _check_entries(connection, problems)
        _check_unlogged_rows(connection, problems)
    return problems.done()


def _check_entries(connection: Connection, problems: _Problems) -> None:
    key = supplier_keys.alias("key")
    revoked = supplier_keys.alias("revoked")
    rows = connection.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
        select(
            log_entries.c.idx,
            log_entries.c.leaf,
            key.c.key_id.label("key_id"),
            key.c.supplier.label("key_supplier"),
            key.c.public_key.label("public_key"),
            key.c.valid_from.label("valid_from"),
            key.c.revoked_at.label("key_revoked_at"),
            key.c.revocation_seq.label("key_revocation_seq"),
            revoked.c.key_id.label("revoked_key_id"),
            revoked.c.revoked_at.label("revoked_at"),
            attestations.c.supplier.label("attestation_supplier"),
            attestations.c.feed_sequence.label("feed_sequence"),
            attestations.c.payload_sha256.label("payload_sha256"),
            attestations.c.key_id.label("attestation_key_id"),
            attestations.c.envelope.label("attestation_envelope"),
            endorsements.c.endorser.label("endorser"),
            endorsements.c.attestation_index.label("attestation_index"),
            endorsements.c.assurance.label("assurance"),
            endorsements.c.envelope.label("endorsement_envelope"),
        )
        .select_from(
            log_entries.outerjoin(key, key.c.seq == log_entries.c.seq)
            .outerjoin(revoked, revoked.c.revocation_seq == log_entries.c.seq)
            .outerjoin(attestations, attestations.c.seq == log_entries.c.seq)
            .outerjoin(endorsements, endorsements.c.seq == log_entries.c.seq)
        )
        .order_by(log_entries.c.idx)
    )
    chains: dict[str, int] = {}  # supplier -> index of its latest attestation so far
    revocations = _Revocations()
    statuses: dict[str, tuple[int, Any]] = {}  # supplier -> its latest verification entry
    # supplier -> the entry that registered its identity, with the organisation and role it
    # logged (registries before 2026-12 logged neither: their suppliers have no such entry)
    identities: dict[str, tuple[int, Any, Any]] = {}
    first_keys: dict[str, int] = {}  # supplier -> the entry of its first key, in any format
    for row in rows:
        index = int(row[0])
        try:
            leaf = json.loads(bytes(row[1]))
        except (ValueError, UnicodeDecodeError):
            leaf = None
        kind = leaf.get("kind") if isinstance(leaf, dict) else None
        if kind == "supplier-verification" and isinstance(leaf, dict):
            statuses[str(leaf.get("supplier"))] = (index, leaf.get("verification"))
        if kind == "supplier-key" and isinstance(leaf, dict) and "authorizedBy" not in leaf:
            # A key no other authorised is an identity's first: one per identity, or a second
            # would speak for it with no word from the first (offline, a bundle cannot tell).
            supplier = str(leaf.get("supplier"))
            if supplier in first_keys:
                problems.add(
                    "identities",
                    f"entry {index} registers {supplier} again, as entry "
                    f"{first_keys[supplier]} did: an identity is registered once",
                )
            else:
                first_keys[supplier] = index
                if "organization" in leaf:
                    identities[supplier] = (index, leaf.get("organization"), leaf.get("role"))
        if (
            kind == "key-revocation"
            and isinstance(leaf, dict)
            and not _revocation_in_turn(index, leaf, row._mapping, revocations, problems)
        ):
            continue  # superseded: the key's row names a later one, checked when it comes
        check = _CHECKS.get(kind) if isinstance(kind, str) else None
        if check is None or leaf is None:
            continue  # not a leaf the tables record (the tree check covers every leaf)
        for text in check(leaf, row._mapping):
            problems.add(f"{kind} entries", f"entry {index} ({kind}): {text}")
        if kind == "attestation":
            supplier = str(leaf.get("supplier"))
            if leaf.get("previousIndex") != chains.get(supplier):
                problems.add(
                    "attestation chains",
                    f"entry {index} (attestation): previousIndex is {leaf.get('previousIndex')}, "
                    f"but {supplier}'s previous attestation is entry {chains.get(supplier)}",
                )
            chains[supplier] = index
    # A later revocation that waits to be integrated (a TSA outage) records it too.
    waiting = select(supplier_keys.c.key_id).where(
        supplier_keys.c.key_id.in_(list(revocations.unrecorded)),
        exists().where(log_pending.c.seq == supplier_keys.c.revocation_seq),
    )
    for (key_id,) in connection.execute(waiting) if revocations.unrecorded else ():
        del revocations.unrecorded[key_id]
    for key_id, index in revocations.unrecorded.items():
        problems.add(
            "key-revocation entries",
            f"entry {index} (key-revocation): the leaf revokes key {key_id}, but no "
            "supplier_keys row records this revocation or a later one: the registry would "
            "accept the key's signatures",
        )
    # Only suppliers whose status the log records: registries before 2026-12 set it in the
    # table alone, and those settings have no entry to compare with.
    table = select(
        suppliers.c.id, suppliers.c.verification, suppliers.c.name, suppliers.c.identity,
        suppliers.c.role,
    )  # fmt: skip
    for supplier, status, name, identity, role in connection.execute(table):
        registration = identities.get(supplier)
        if registration is not None:
            for text in _identity(registration, name, identity, role):
                problems.add("identities", f"supplier {supplier}: {text}")
        logged = statuses.pop(supplier, None)
        if logged is not None and logged[1] != status:
            problems.add(
                "verification statuses",
                f"supplier {supplier} is {status!r} in the suppliers table, but its latest "
                f"verification entry, {logged[0]}, says {logged[1]!r}",
            )
    for supplier, (index, _) in statuses.items():
        problems.add(
            "verification statuses",
            f"entry {index} sets the verification of {supplier}, which the suppliers table lacks",
        )
    heads = {
        str(chain): int(last)
        for chain, last in connection.execute(
            select(log_chain_heads.c.chain, log_chain_heads.c.last_index)
        )
    }
    for supplier, last in chains.items():
        if heads.get(f"attestations:{supplier}") != last:
            problems.add(
                "chain heads",
                f"the chain head of {supplier} is entry {heads.get(f'attestations:{supplier}')}, "
                f"but its latest attestation is entry {last}",
            )


def _key(leaf: dict[str, Any], row: RowMapping) -> Iterator[str]:
    key_id, supplier, public, valid_from = (
        row["key_id"], row["key_supplier"], row["public_key"], row["valid_from"]
    )  # fmt: skip
    if key_id is None:
        yield f"no supplier_keys row records key {leaf.get('keyId')}"
        return
    if key_id != leaf.get("keyId") or supplier != leaf.get("supplier"):
        yield f"its supplier_keys row is key {key_id} of {supplier}, the leaf names another"
    if bundle.key_id(bytes(public)) != leaf.get("keyId"):
        yield "its supplier_keys row holds another public key"
    row_time, leaf_time = _instant(valid_from), _parsed(leaf.get("validFrom"))
    if row_time is None or leaf_time is None or not timedelta(0) <= row_time - leaf_time <= ROW_LAG:
        yield f"its supplier_keys row is valid from {valid_from}, the leaf from {leaf.get('validFrom')}"
    if row["key_revoked_at"] is not None and row["key_revocation_seq"] is None:
        yield "its supplier_keys row is revoked, but no log entry revokes it"


def _identity(
    registration: tuple[int, Any, Any], name: Any, identity: Any, role: Any
) -> Iterator[str]:
    """How a suppliers row differs from the identity its registration entry logged."""
    index, organization, logged_role = registration
    try:
        stored = json.loads(identity)
    except (TypeError, ValueError):
        stored = None
    if stored != organization:
        yield f"its stored organisation is not the one entry {index} registered"
    if not isinstance(organization, dict) or name != organization.get("name"):
        yield f"its name is {name!r}, entry {index} registered another"
    if role != logged_role:
        yield f"its role is {role!r}, entry {index} registered it as {logged_role!r}"


@dataclass
class _Revocations:
    """The key revocations read so far, in log order."""

    # key id -> (index, effective time) of its latest revocation
    latest: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)
    # key id -> index of a revocation that no row records: a later one of the key must
    unrecorded: dict[str, int] = field(default_factory=dict)


def _revocation_in_turn(
    index: int,
    leaf: dict[str, Any],
    row: RowMapping,
    revocations: _Revocations,
    problems: _Problems,
) -> bool:
    """Check a revocation against the key's revocations before it: a key may be revoked again
    from an earlier time only (a key found stolen after its retirement was scheduled), and its
    row then records the latest. False when no row records this one (a later one must)."""
    key_id, when = str(leaf.get("keyId")), _parsed(leaf.get("revokedAt"))
    before = revocations.latest.get(key_id)
    if before is not None and (when is None or before[1] is None or when >= before[1]):
        problems.add(
            "key-revocation entries",
            f"entry {index} (key-revocation): it revokes key {key_id} from "
            f"{leaf.get('revokedAt')}, no earlier than entry {before[0]} did: a further "
            "revocation must take effect earlier",
        )
    revocations.latest[key_id] = (index, when)
    if row["revoked_key_id"] is None:
        revocations.unrecorded[key_id] = index
        return False
    revocations.unrecorded.pop(key_id, None)
    return True


def _revocation(leaf: dict[str, Any], row: RowMapping) -> Iterator[str]:
    # A revocation that no row records is :func:`_revocation_in_turn`'s.
    key_id, revoked_at = row["revoked_key_id"], row["revoked_at"]
    if key_id != leaf.get("keyId"):
        yield f"the supplier_keys row of key {key_id} names this revocation, the leaf another key"
    if _instant(revoked_at) != _parsed(leaf.get("revokedAt")):
        yield f"the key's row is revoked from {revoked_at}, the leaf from {leaf.get('revokedAt')}"


def _attestation(leaf: dict[str, Any], row: RowMapping) -> Iterator[str]:
    supplier, feed_sequence, digest, key_id, stored = (
        row["attestation_supplier"], row["feed_sequence"], row["payload_sha256"],
        row["attestation_key_id"], row["attestation_envelope"],
    )  # fmt: skip
    if supplier is None:
        yield "no attestations row holds its envelope"
        return
    if supplier != leaf.get("supplier") or digest != leaf.get("payloadSha256"):
        yield "its attestations row names another supplier or payload digest"
    try:
        envelope = envelope_of(stored)
    except DamagedStoreError as exc:
        yield str(exc)
        return
    if bundle.attestation_leaf(supplier, envelope, leaf.get("previousIndex")) != canonical(leaf):
        yield "its stored envelope is not the one the leaf binds (payload or signatures differ)"
        return
    if key_id not in {signature.keyid for signature in envelope.signatures}:
        yield f"its attestations row names key {key_id}, which did not sign the envelope"
    if _feed_sequence(envelope) != feed_sequence:
        yield f"its attestations row says feed sequence {feed_sequence}, the feed another"


def _endorsement(leaf: dict[str, Any], row: RowMapping) -> Iterator[str]:
    endorser, attestation_index, assurance, stored = (
        row["endorser"], row["attestation_index"], row["assurance"], row["endorsement_envelope"]
    )  # fmt: skip
    if endorser is None:
        yield "no endorsements row holds its envelope"
        return
    recorded = (endorser, attestation_index, assurance)
    if recorded != (leaf.get("endorser"), leaf.get("attestationIndex"), leaf.get("assurance")):
        yield "its endorsements row names another endorser, attestation or assurance"
    try:
        envelope = envelope_of(stored)
    except DamagedStoreError as exc:
        yield str(exc)
        return
    rebuilt = bundle.endorsement_leaf(
        endorser, int(attestation_index), str(leaf.get("payloadSha256")), assurance, envelope
    )
    if rebuilt != canonical(leaf):
        yield "its stored envelope is not the one the leaf binds"


_CHECKS: dict[str, Callable[[dict[str, Any], RowMapping], Iterator[str]]] = {
    "supplier-key": _key,
    "key-revocation": _revocation,
    "attestation": _attestation,
    "endorsement": _endorsement,
}


def _check_unlogged_rows(connection: Connection, problems: _Problems) -> None:
    """Rows whose entry is neither in the tree nor waiting to be integrated."""

    def recorded(seq: Any) -> Any:
        return or_(
            exists().where(log_entries.c.seq == seq), exists().where(log_pending.c.seq == seq)
        )

    for table, column, what in (
        (supplier_keys, supplier_keys.c.seq, "key"),
        (supplier_keys, supplier_keys.c.revocation_seq, "revocation of key"),
        (attestations, attestations.c.seq, "attestation"),
        (endorsements, endorsements.c.seq, "endorsement"),
    ):
        named = table.c.key_id if table is supplier_keys else table.c.seq
        for name, seq in connection.execute(
            select(named, column).where(column.is_not(None), ~recorded(column))
        ):
            problems.add(
                f"unlogged {what} rows",
                f"the {what} {name} (entry sequence number {seq}) is in the tables but not in "
                "the log",
            )
    ownerless = select(supplier_keys.c.key_id, supplier_keys.c.supplier).where(
        ~exists().where(suppliers.c.id == supplier_keys.c.supplier)
    )
    for key_id, supplier in connection.execute(ownerless):
        problems.add(
            "keys without a supplier",
            f"key {key_id} is logged for {supplier}, but the suppliers table has no {supplier}",
        )
    keyless = select(suppliers.c.id).where(
        ~exists().where(supplier_keys.c.supplier == suppliers.c.id)
    )
    for (supplier,) in connection.execute(keyless):
        problems.add(
            "suppliers without a logged key",
            f"supplier {supplier} is registered, but no logged key registers it",
        )


def _feed_sequence(envelope: dsse.Envelope) -> Any:
    try:
        return json.loads(envelope.payload)["predicate"]["header"]["sequence"]
    except (ValueError, KeyError, TypeError):
        return None


def _instant(value: datetime | None) -> datetime | None:
    """A time as read back, in UTC (:func:`utc`: SQLite keeps no offset)."""
    return None if value is None else utc(value)


def _parsed(text: Any) -> datetime | None:
    """A leaf's time as the registry read it when it logged it, in UTC."""
    value = bundle.leaf_time(text)
    return None if value is None else value.astimezone(UTC)
