"""A supplier's quality profile and history, read from the index, each claim pointing to the
log entry (and bundle) that proves it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import Connection

from sqm.registry.db import (
    attestations,
    endorsements,
    envelope_of,
    index_attestations,
    index_certifications,
    index_facts,
    log_entries,
    supplier_keys,
    suppliers,
)
from sqm.registry.facts import ASSURANCE_ORDER

HISTORY_LIMIT = 100


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return str(value.isoformat())


class Profiles:
    """Reads of suppliers and attestations for people and agents."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _reading(self, connection: Connection | None) -> Iterator[Connection]:
        """``connection``, or a connection of its own. Why: a profile's six reads on one
        connection cost a fifth less than taking one from the pool for each (at 100,000
        suppliers); on SQLite they also see one state of the index (PostgreSQL's READ
        COMMITTED gives each statement its own)."""
        if connection is not None:
            yield connection
            return
        with self.engine.connect() as own:
            yield own

    def latest_index(
        self, supplier: str, as_of: datetime | None = None, connection: Connection | None = None
    ) -> int | None:
        """The log index of the supplier's latest attestation (as of a time, if given)."""
        query = select(func.max(index_attestations.c.log_index)).where(
            index_attestations.c.supplier == supplier
        )
        if as_of is not None:
            query = query.where(index_attestations.c.issued_at <= as_of)
        with self._reading(connection) as connection:
            value = connection.execute(query).scalar()
        return None if value is None else int(value)

    def supplier(self, supplier: str, as_of: datetime | None = None) -> dict[str, Any] | None:
        """The profile: identity and verification, keys, latest attestation, its metrics and
        certifications, and the most recent history; None for an unknown supplier."""
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(suppliers).where(suppliers.c.id == supplier))
                .mappings()
                .first()
            )
            if row is None:
                return None
            keys = (
                connection.execute(
                    select(supplier_keys, log_entries.c.idx)
                    .join(log_entries, log_entries.c.seq == supplier_keys.c.seq)
                    .where(supplier_keys.c.supplier == supplier)
                    .order_by(log_entries.c.idx)
                )
                .mappings()
                .all()
            )
            latest = self.latest_index(supplier, as_of, connection)
            profile: dict[str, Any] = {
                "supplier": supplier,
                "name": row["name"],
                "role": row["role"],
                "verification": row["verification"],
                "identity": json.loads(row["identity"]),
                "keys": [
                    {
                        "keyId": key["key_id"],
                        "validFrom": _iso(key["valid_from"]),
                        "revokedAt": _iso(key["revoked_at"]),
                        "logIndex": int(key["idx"]),
                    }
                    for key in keys
                ],
                "asOf": _iso(as_of),
                "latest": None if latest is None else self.attestation_summary(latest, connection),
                "metrics": [] if latest is None else self.metrics(latest, connection),
                "certifications": [] if latest is None else self.certifications(latest, connection),
                "history": self.history(supplier, as_of, connection=connection),
            }
        return profile

    def attestation_summary(
        self, index: int, connection: Connection | None = None
    ) -> dict[str, Any] | None:
        with self._reading(connection) as connection:
            row = (
                connection.execute(
                    select(index_attestations).where(index_attestations.c.log_index == index)
                )
                .mappings()
                .first()
            )
            endorsed = connection.execute(
                select(func.count())
                .select_from(endorsements)
                .where(endorsements.c.attestation_index == index)
            ).scalar()
        if row is None:
            return None
        return {
            "logIndex": index,
            "supplier": row["supplier"],
            "feedId": row["feed_id"],
            "feedSequence": int(row["feed_sequence"]),
            "issuedAt": _iso(row["issued_at"]),
            "previousIndex": row["previous_index"],
            "payloadSha256": row["payload_sha256"],
            "assurance": ASSURANCE_ORDER[int(row["assurance_rank"])],
            "endorsements": int(endorsed or 0),
            "bundle": f"/api/v1/bundles/{index}",
        }

    def metrics(self, index: int, connection: Connection | None = None) -> list[dict[str, Any]]:
        with self._reading(connection) as connection:
            rows = (
                connection.execute(
                    select(index_facts)
                    .where(index_facts.c.log_index == index)
                    .order_by(index_facts.c.section, index_facts.c.record_id, index_facts.c.metric)
                )
                .mappings()
                .all()
            )
        return [
            {
                "metric": r["metric"],
                "recordId": r["record_id"],
                "value": r["value"],
                "unit": r["unit"],
                "site": r["site"],
                "product": r["product"],
                "characteristic": r["characteristic"],
                "characteristicClass": r["characteristic_class"],
                "asOf": _iso(r["as_of"]),
                "claimedAssurance": ASSURANCE_ORDER[int(r["claimed_rank"])],
            }
            for r in rows
        ]

    def certifications(
        self, index: int, connection: Connection | None = None
    ) -> list[dict[str, Any]]:
        with self._reading(connection) as connection:
            rows = (
                connection.execute(
                    select(index_certifications)
                    .where(index_certifications.c.log_index == index)
                    .order_by(index_certifications.c.scheme)
                )
                .mappings()
                .all()
            )
        return [
            {
                "recordId": r["record_id"],
                "scheme": r["scheme"],
                "status": r["status"],
                "validFrom": _iso(r["valid_from"]),
                "validUntil": _iso(r["valid_until"]),
                "certificateNumber": r["certificate_number"],
                "site": r["site"],
            }
            for r in rows
        ]

    def history(
        self,
        supplier: str,
        as_of: datetime | None = None,
        limit: int = HISTORY_LIMIT,
        connection: Connection | None = None,
    ) -> list[dict[str, Any]]:
        """The supplier's attestations, newest first; each names the one before it
        (``previousIndex``), so a buyer can tell that none was hidden."""
        query = (
            select(index_attestations)
            .where(index_attestations.c.supplier == supplier)
            .order_by(index_attestations.c.log_index.desc())
            .limit(limit)
        )
        if as_of is not None:
            query = query.where(index_attestations.c.issued_at <= as_of)
        with self._reading(connection) as connection:
            rows = connection.execute(query).mappings().all()
        return [
            {
                "logIndex": int(r["log_index"]),
                "feedSequence": int(r["feed_sequence"]),
                "issuedAt": _iso(r["issued_at"]),
                "previousIndex": r["previous_index"],
                "assurance": ASSURANCE_ORDER[int(r["assurance_rank"])],
                "bundle": f"/api/v1/bundles/{int(r['log_index'])}",
            }
            for r in rows
        ]

    def trend(
        self, supplier: str, metrics: list[str], limit: int = 60
    ) -> dict[str, list[dict[str, Any]]]:
        """Per metric, its values over the supplier's attestations (oldest first), for charts."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    index_facts.c.metric,
                    index_facts.c.log_index,
                    index_facts.c.record_id,
                    index_facts.c.value,
                    index_facts.c.unit,
                    index_facts.c.as_of,
                    index_attestations.c.issued_at,
                )
                .join(index_attestations, index_attestations.c.log_index == index_facts.c.log_index)
                # From the supplier's attestations to their facts, by the facts' entry index.
                .where(index_attestations.c.supplier == supplier, index_facts.c.metric.in_(metrics))
                .order_by(index_facts.c.log_index.desc())
                .limit(limit * len(metrics) * 8)
            ).all()
        series: dict[str, list[dict[str, Any]]] = {metric: [] for metric in metrics}
        for metric, index, record, value, unit, as_of, issued in reversed(rows):
            series[metric].append(
                {
                    "logIndex": int(index),
                    "recordId": record,
                    "value": value,
                    "unit": unit,
                    "at": _iso(as_of or issued),
                }
            )
        return series

    def feed(self, index: int) -> dict[str, Any] | None:
        """The feed of the attestation at ``index`` (from the envelope the log leaf binds)."""
        with self.engine.connect() as connection:
            envelope = connection.execute(
                select(attestations.c.envelope)
                .join(log_entries, log_entries.c.seq == attestations.c.seq)
                .where(log_entries.c.idx == index)
            ).scalar()
        if envelope is None:
            return None
        feed: dict[str, Any] = json.loads(envelope_of(envelope).payload)["predicate"]
        return feed
