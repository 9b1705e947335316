"""`sqm registry fsck` beyond the tree: the registry's tables against the entries that record
them, and rows the tree check alone would miss, on both databases."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.db import (
    attestations,
    endorsements,
    log_chain_heads,
    log_checkpoints,
    log_entries,
    log_nodes,
    node_key,
    supplier_keys,
    suppliers,
)
from sqm.registry.log import TransparencyLog
from sqm.registry.records import MAX_REPORTED, check_records
from sqm.registry.timestampers import TimestampUnavailableError
from sqm.trust import bundle
from sqm.trust.canonical import canonical
from tests.registry.test_ingest import (
    AUDITOR,
    FEED,
    NOW,
    SUPPLIER,
    _close,
    _endorsement,
    _envelope,
    _next,
    _raw,
    _register,
    _register_endorser,
    _revoke,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """A registry holding every kind of entry the tables record: two suppliers' keys, one
    revoked (from 2099) and one rotated in, attestations and an endorsement."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    made = create_app(
        RegistryConfig(
            data_dir=tmp_path / "data",
            database_url=url,
            origin="registry.test/log",
            operator_token="operator-secret",
        )
    )
    made.extensions["sqm"]["ingest"].now = lambda: NOW
    client = made.test_client()
    key = Ed25519PrivateKey.generate()
    assert _register(client, key).status_code == 201
    logged = []
    for sequence in (14, 15):
        answer = client.post("/api/v1/attestations", json=_envelope(key, _next(FEED, sequence)))
        assert answer.status_code == 201, answer.json
        logged.append(answer.json)
    assert _revoke(client, key, "2099-01-01T00:00:00+00:00").status_code == 201
    auditor = Ed25519PrivateKey.generate()
    assert _register_endorser(client, auditor, "529900SQMCERTBODY123").status_code == 201
    digest = json.loads(base64.b64decode(logged[0]["leaf"]))["payloadSha256"]
    endorsement = _endorsement(auditor, logged[0]["logIndex"], digest)
    endorsed = client.post("/api/v1/endorsements", json=endorsement)
    assert endorsed.status_code == 201, endorsed.json
    yield made
    _close(made)


def _log(app: Flask) -> TransparencyLog:
    log: TransparencyLog = app.extensions["sqm"]["log"]
    return log


def _tampered(app: Flask, change: Callable[[Connection], object]) -> list[str]:
    log = _log(app)
    with log.engine.begin() as connection:
        change(connection)
    return log.fsck() + check_records(log.engine)


def test_an_intact_registry_has_no_problems(app: Flask) -> None:
    log = _log(app)
    with log.engine.connect() as connection:
        kinds = connection.execute(select(func.count()).select_from(log_entries)).scalar()
    assert kinds == 6  # 2 keys, 2 attestations, a revocation, an endorsement
    assert log.fsck() == [] and check_records(log.engine) == []


def test_a_key_unrevoked_in_its_table_is_found(app: Flask) -> None:
    problems = _tampered(
        app,
        lambda c: c.execute(update(supplier_keys).values(revoked_at=None, revocation_seq=None)),
    )
    assert len(problems) == 1 and "would accept the key's signatures" in problems[0]


def test_a_revocation_moved_in_its_table_is_found(app: Flask) -> None:
    later = NOW.replace(year=2100)
    problems = _tampered(
        app,
        lambda c: c.execute(
            update(supplier_keys)
            .where(supplier_keys.c.revocation_seq.is_not(None))
            .values(revoked_at=later)
        ),
    )
    assert len(problems) == 1 and "is revoked from 2100" in problems[0]


def test_a_key_revoked_again_earlier_is_checked_against_its_latest_revocation(
    app: Flask,
) -> None:
    client = app.test_client()
    with _log(app).engine.connect() as connection:
        key_id = connection.execute(
            select(supplier_keys.c.key_id).where(supplier_keys.c.revocation_seq.is_not(None))
        ).scalar_one()
    first = {"revokedAt": "2050-01-01T00:00:00Z"}
    token = {"Authorization": "Bearer operator-secret"}
    again = client.post(f"/api/v1/keys/{key_id}/revocation", json=first, headers=token)
    assert again.status_code == 201, again.json
    assert check_records(_log(app).engine) == []
    # The row set back to the superseded revocation: the later one is then unrecorded.
    with _log(app).engine.connect() as connection:
        earlier = connection.execute(
            select(log_entries.c.seq).where(log_entries.c.idx == 3)  # the first revocation
        ).scalar_one()
    problems = _tampered(
        app,
        lambda c: c.execute(
            update(supplier_keys)
            .where(supplier_keys.c.key_id == key_id)
            .values(revoked_at=datetime(2099, 1, 1, tzinfo=UTC), revocation_seq=earlier)
        ),
    )
    assert len(problems) == 1, problems
    assert "no supplier_keys row records this revocation or a later one" in problems[0]


def test_a_further_revocation_waiting_to_be_logged_is_no_problem(app: Flask) -> None:
    # Sequenced during a TSA outage: the key's row names it while it waits in log_pending.
    client, log = app.test_client(), _log(app)
    with log.engine.connect() as connection:
        key_id = connection.execute(
            select(supplier_keys.c.key_id).where(supplier_keys.c.revocation_seq.is_not(None))
        ).scalar_one()
    stamper = log.timestampers[0]
    working = stamper.stamp

    def down(message: bytes, serial: int) -> bytes:
        raise TimestampUnavailableError("the TSA is down")

    stamper.stamp = down  # type: ignore[method-assign]
    try:
        waiting = client.post(
            f"/api/v1/keys/{key_id}/revocation",
            json={"revokedAt": "2050-01-01T00:00:00Z"},
            headers={"Authorization": "Bearer operator-secret"},
        )
        assert waiting.status_code == 503, waiting.json
        assert log.waiting()
        assert check_records(log.engine) == []
    finally:
        stamper.stamp = working  # type: ignore[method-assign]
    log.integrate()
    assert not log.waiting()
    assert log.fsck() == [] and check_records(log.engine) == []


def test_a_second_first_key_of_an_identity_is_found(app: Flask) -> None:
    # A key that no key authorised, for an identity that has one: logged by the operator, say,
    # in the format of registries before 2026-12 (no organisation), which fsck also reads.
    log, key = _log(app), Ed25519PrivateKey.generate()
    public = _raw(key)
    possession = key.sign(bundle.registration_message(SUPPLIER, public))
    log.sequence(bundle.key_leaf(SUPPLIER, public, "2026-11-28T00:00:00Z", possession))
    log.integrate()
    problems = log.fsck() + check_records(log.engine)
    assert f"entry 6 registers {SUPPLIER} again, as entry 0 did" in " ".join(problems), problems


def test_a_revocation_without_its_entry_is_found(app: Flask) -> None:
    problems = _tampered(
        app,
        lambda c: c.execute(
            update(supplier_keys)
            .where(supplier_keys.c.revocation_seq.is_(None))
            .values(revoked_at=NOW)
        ),
    )
    assert problems == [  # the auditor's key, registered as entry 4
        "entry 4 (supplier-key): its supplier_keys row is revoked, but no log entry revokes it"
    ]


def test_a_changed_stored_envelope_is_found(app: Flask) -> None:
    log = _log(app)
    with log.engine.connect() as connection:
        stored = connection.execute(
            select(attestations.c.envelope).order_by(attestations.c.seq)
        ).scalars()
        first, second = list(stored)
    problems = _tampered(
        app,  # the second feed's envelope put in the first one's row
        lambda c: c.execute(
            update(attestations)
            .where(attestations.c.seq == select(func.min(attestations.c.seq)).scalar_subquery())
            .values(envelope=second)
        ),
    )
    assert first != second
    assert any("stored envelope is not the one the leaf binds" in p for p in problems)


def test_a_changed_attestation_row_is_found(app: Flask) -> None:
    problems = _tampered(
        app,
        lambda c: c.execute(
            update(attestations).values(
                feed_sequence=attestations.c.feed_sequence + 1000, key_id="0" * 64
            )
        ),
    )
    assert any("says feed sequence 1014" in p for p in problems)
    assert any("says feed sequence 1015" in p for p in problems)
    assert sum("which did not sign the envelope" in p for p in problems) == 2


def test_dropped_rows_are_found(app: Flask) -> None:
    log = _log(app)
    assert any(
        "no attestations row holds its envelope" in p
        for p in _tampered(app, lambda c: c.execute(delete(attestations)))
    )
    assert any(
        "no endorsements row holds its envelope" in p
        for p in _tampered(app, lambda c: c.execute(delete(endorsements)))
    )
    dropped_supplier = _tampered(
        app, lambda c: c.execute(delete(suppliers).where(suppliers.c.id.like("LEI:5299%KRAFT%")))
    )
    assert any("the suppliers table has no" in p for p in dropped_supplier)
    with log.engine.begin() as connection:  # the tree's checks
        connection.execute(delete(log_nodes).where(log_nodes.c.node == node_key(1, 0)))
        newest = connection.execute(select(func.max(log_checkpoints.c.size))).scalar()
        connection.execute(delete(log_checkpoints).where(log_checkpoints.c.size == newest))
    problems = log.fsck()
    assert "subtree (1, 0) is missing" in problems
    assert any("a checkpoint row was dropped" in p for p in problems)


def test_rows_no_entry_records_are_found(app: Flask) -> None:
    def forge(connection: Connection) -> None:
        row = connection.execute(select(supplier_keys).limit(1)).mappings().one()
        forged = {**row, "key_id": "f" * 64, "seq": 10_000, "revocation_seq": None}
        connection.execute(supplier_keys.insert().values(forged))

    problems = _tampered(app, forge)
    assert problems == [
        f"the key {'f' * 64} (entry sequence number 10000) is in the tables but not in the log"
    ]


def test_a_broken_attestation_chain_is_found(app: Flask) -> None:
    problems = _tampered(app, lambda c: c.execute(update(log_chain_heads).values(last_index=0)))
    assert (
        len(problems) == 1
        and "the chain head of LEI:529900SQMKRAFTWERK41 is entry 0" in (problems[0])
    )


def test_problems_of_one_kind_are_counted_beyond_a_limit(app: Flask) -> None:
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    other = copy.deepcopy(FEED)
    other["header"]["supplier"]["identifiers"][0]["code"] = "529900SQMOTHERSUPP09"
    assert _register(client, key, other["header"]["supplier"]).status_code == 201
    feeds = [_next(other, n) for n in range(2, MAX_REPORTED + 7)]
    for feed in feeds:
        feed["header"]["supplier"] = other["header"]["supplier"]
        answer = client.post("/api/v1/attestations", json=_envelope(key, feed))
        assert answer.status_code == 201, answer.json
    problems = _tampered(
        app,
        lambda c: c.execute(
            update(attestations).values(feed_sequence=attestations.c.feed_sequence + 1000)
        ),
    )
    assert len(problems) == MAX_REPORTED + 1
    assert problems[-1] == f"... and {len(feeds) + 2 - MAX_REPORTED} more of: attestation entries"


def test_a_key_row_a_little_later_than_its_leaf_is_an_older_registry_not_damage(
    app: Flask,
) -> None:
    """Registries before 2026-12 read the clock for the leaf, then again for the row."""
    from datetime import timedelta

    def shift(by: timedelta) -> Callable[[Connection], object]:
        return lambda c: c.execute(
            update(supplier_keys).values(valid_from=NOW + by).where(supplier_keys.c.seq == 1)
        )

    assert _tampered(app, shift(timedelta(milliseconds=3))) == []
    assert _tampered(app, shift(timedelta(minutes=9))) == []
    for wrong in (timedelta(minutes=11), timedelta(seconds=-1)):
        problems = _tampered(app, shift(wrong))
        assert len(problems) == 1 and "its supplier_keys row is valid from" in problems[0]


def test_a_verification_status_is_checked_against_its_latest_entry(app: Flask) -> None:
    ingest = app.extensions["sqm"]["ingest"]
    supplier = "LEI:529900SQMKRAFTWERK41"

    def set_to(status: str) -> Callable[[Connection], object]:
        return lambda c: c.execute(
            update(suppliers).where(suppliers.c.id == supplier).values(verification=status)
        )

    # Set in the table alone, as registries before 2026-12 did: nothing to compare with.
    assert _tampered(app, set_to("verified")) == []
    assert _tampered(app, set_to("unverified")) == []
    assert ingest.set_verification(supplier, "suspended")["changed"] is True
    assert check_records(_log(app).engine) == []
    problems = _tampered(app, set_to("verified"))
    assert len(problems) == 1
    assert "is 'verified' in the suppliers table" in problems[0]
    assert "says 'suspended'" in problems[0]


def test_a_revocation_time_in_lowercase_rfc3339_is_read_as_logged(app: Flask) -> None:
    """RFC 3339 allows "t" and "z"; fsck reads a leaf's time as the registry did."""
    client = app.test_client()
    key = Ed25519PrivateKey.generate()
    other = copy.deepcopy(FEED["header"]["supplier"])
    other["identifiers"][0]["code"] = "529900SQMOTHERSUPP09"
    assert _register(client, key, other).status_code == 201
    key_id = bundle.key_id(_raw(key))
    revoked_at = "2099-12-07t10:00:00z"
    signature = key.sign(bundle.revocation_message("LEI:529900SQMOTHERSUPP09", key_id, revoked_at))
    body = {"revokedAt": revoked_at, "signature": base64.b64encode(signature).decode()}
    assert client.post(f"/api/v1/keys/{key_id}/revocation", json=body).status_code == 201
    assert _log(app).fsck() + check_records(_log(app).engine) == []


def test_a_registration_entry_logs_the_identity_and_its_role(app: Flask) -> None:
    log = _log(app)
    with log.engine.connect() as connection:
        leaves = [
            json.loads(bytes(leaf))
            for leaf in connection.execute(select(log_entries.c.leaf)).scalars()
        ]
    registrations = {leaf["supplier"]: leaf for leaf in leaves if leaf["kind"] == "supplier-key"}
    assert registrations[SUPPLIER]["organization"] == FEED["header"]["supplier"]
    assert registrations[SUPPLIER]["role"] == "supplier"
    auditor = registrations["LEI:529900SQMCERTBODY123"]
    assert auditor["role"] == "endorser" and auditor["organization"]["name"] == AUDITOR["name"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"name": "Bosch GmbH"}, "its name is 'Bosch GmbH', entry 0 registered another"),
        ({"role": "endorser"}, "its role is 'endorser', entry 0 registered it as 'supplier'"),
    ],
    ids=["renamed", "made-an-endorser"],
)
def test_an_identity_changed_in_its_table_is_found(
    app: Flask, values: dict[str, str], expected: str
) -> None:
    problems = _tampered(
        app, lambda c: c.execute(update(suppliers).where(suppliers.c.id == SUPPLIER).values(values))
    )
    assert f"supplier {SUPPLIER}: {expected}" in problems
    assert len(problems) == 1


def test_changed_identifiers_are_found(app: Flask) -> None:
    changed = copy.deepcopy(FEED["header"]["supplier"])
    changed["identifiers"].append({"scheme": "DUNS", "code": "150483782"})
    problems = _tampered(
        app,
        lambda c: c.execute(
            update(suppliers).where(suppliers.c.id == SUPPLIER).values(identity=json.dumps(changed))
        ),
    )
    assert problems == [
        f"supplier {SUPPLIER}: its stored organisation is not the one entry 0 registered"
    ]


def test_suppliers_registered_before_identities_were_logged_pass(app: Flask) -> None:
    """A registry before 2026-12 logged a key's supplier id alone: its suppliers have nothing
    logged to compare with, and fsck does not fault them."""
    log = _log(app)

    def older(connection: Connection) -> None:
        for seq, leaf in connection.execute(select(log_entries.c.seq, log_entries.c.leaf)).all():
            value = json.loads(bytes(leaf))
            if value["kind"] == "supplier-key":
                del value["organization"], value["role"]
                connection.execute(
                    update(log_entries)
                    .where(log_entries.c.seq == seq)
                    .values(leaf=canonical(value))
                )

    with log.engine.begin() as connection:
        older(connection)
    assert check_records(log.engine) == []
