"""Entries that commit out of sequence order (PostgreSQL hands out sequence numbers at insert,
not at commit) are integrated all the same; none is skipped for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from sqm.registry.db import log_pending
from sqm.registry.log import TransparencyLog
from sqm.trust import timestamp


def test_an_entry_committed_after_a_later_one_was_integrated_is_integrated(
    engine: Engine,
) -> None:
    authority = timestamp.create_authority("SQM test", datetime.now(UTC) - timedelta(days=1))[0]
    log = TransparencyLog(engine, "registry.test/log", Ed25519PrivateKey.generate(), authority)
    with engine.connect() as slow:
        slow_transaction = slow.begin()
        slow.execute(
            log_pending.insert().values(
                leaf=b"first in, last committed", received_at=datetime.now(UTC)
            )
        )
        if engine.dialect.name == "sqlite":
            # SQLite has one writer at a time, so commit order is sequence order already;
            # commit here and show the plain case.
            slow_transaction.commit()
        log.sequence(b"second in, first committed")
        log.integrate()
        if engine.dialect.name != "sqlite":
            assert log.size() == 1
            slow_transaction.commit()
    log.integrate()
    leaves = sorted(log.leaf(i) for i in range(log.size()))
    assert leaves == [b"first in, last committed", b"second in, first committed"]
    assert log.waiting() == 0 and log.fsck() == []
