"""Operator endpoints, `sqm registry fsck`, and the registry under gunicorn; fsck and gunicorn
on SQLite and on PostgreSQL (a fresh database, dropped after)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, update

from sqm.cli import main
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.db import log_entries
from sqm.registry.seed import seed
from tests.conftest import EXAMPLES, POSTGRES_ADMIN, REPO, fresh_postgres_database
from tests.registry.servers import first_answer, free_port

SUPPLIER = "LEI:529900SQMKRAFTWERK41"


def _seeded(tmp_path: Path, token: str | None = None, database: str | None = None) -> object:
    app = create_app(RegistryConfig(data_dir=tmp_path, database_url=database, operator_token=token))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    return app


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The registry's database URL: None for SQLite in the data folder, or a fresh PostgreSQL
    database of its own, dropped after."""
    if request.param == "sqlite":
        yield None
    else:
        with fresh_postgres_database() as url:
            yield url


def test_verification_status_needs_the_operator_token(tmp_path: Path) -> None:
    client = _seeded(tmp_path, token="s3cret").test_client()  # type: ignore[attr-defined]
    path = f"/api/v1/operator/suppliers/{SUPPLIER}/verification"
    assert client.put(path, json={"status": "verified"}).status_code == 401
    wrong = client.put(path, json={"status": "verified"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json["error"] == "unauthorised"
    auth = {"Authorization": "bearer s3cret"}  # the scheme's name is case-insensitive
    assert (
        client.put(path, json={"status": "trusted"}, headers=auth).json["error"] == "invalid_status"
    )
    assert (
        client.put(
            "/api/v1/operator/suppliers/LEI:X/verification",
            json={"status": "verified"},
            headers=auth,
        ).status_code
        == 404
    )
    done = client.put(path, json={"status": "verified"}, headers=auth)
    assert done.status_code == 200 and done.json is not None
    assert done.json["supplier"] == SUPPLIER and done.json["verification"] == "verified"
    # An identity event, logged like a key event: the leaf names the supplier and its status.
    leaf = json.loads(base64.b64decode(done.json["leaf"]))
    assert leaf["kind"] == "supplier-verification" and leaf["supplier"] == SUPPLIER
    assert leaf["verification"] == "verified" and done.json["changed"] is True
    entry = client.get(f"/api/v1/log/entries/{done.json['logIndex']}").json
    assert entry is not None and base64.b64decode(entry["leaf"]) == base64.b64decode(
        done.json["leaf"]
    )
    size = client.get("/api/v1/log/checkpoint").get_data(as_text=True).splitlines()[1]
    again = client.put(path, json={"status": "verified"}, headers=auth)
    assert again.status_code == 200 and again.json == {
        "supplier": SUPPLIER,
        "verification": "verified",
        "changed": False,
    }
    assert client.get("/api/v1/log/checkpoint").get_data(as_text=True).splitlines()[1] == size
    assert client.get(f"/api/v1/suppliers/{SUPPLIER}").json["verification"] == "verified"
    no_body = client.put(path, headers=auth)
    assert no_body.status_code == 400 and no_body.json["error"] == "malformed_json"


def test_operator_api_is_off_without_a_token(tmp_path: Path) -> None:
    client = _seeded(tmp_path).test_client()  # type: ignore[attr-defined]
    response = client.put(
        f"/api/v1/operator/suppliers/{SUPPLIER}/verification", json={"status": "verified"}
    )
    assert response.status_code == 403 and response.json["error"] == "operator_api_disabled"


def test_fsck_command_reports_intact_and_tampered_logs(
    tmp_path: Path, database: str | None
) -> None:
    app = _seeded(tmp_path, database=database)
    runner = CliRunner()
    named = [] if database is None else ["--database", database]
    store = ["--data", str(tmp_path), *named]
    clean = runner.invoke(main, ["registry", "fsck", *store])
    assert clean.exit_code == 0 and "6 entries checked: intact" in clean.output
    from_env = runner.invoke(
        main,
        ["registry", "fsck"],
        env={"SQM_REGISTRY_DATA": str(tmp_path), "SQM_REGISTRY_DATABASE": database},
    )
    assert from_env.exit_code == 0 and "6 entries checked: intact" in from_env.output
    engine = app.extensions["sqm"]["log"].engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(update(log_entries).where(log_entries.c.idx == 2).values(leaf=b"forged"))
    broken = runner.invoke(main, ["registry", "fsck", *store])
    assert broken.exit_code == 1 and "PROBLEM  entry 2" in broken.output
    app.extensions["sqm"]["log"].sequence(b"stored, not integrated")  # type: ignore[attr-defined]
    waiting = runner.invoke(main, ["registry", "fsck", *store])
    assert "1 entries sequenced and not yet integrated" in waiting.output
    engine.dispose()
    nowhere = runner.invoke(main, ["registry", "fsck", "--data", str(tmp_path / "nowhere"), *named])
    assert nowhere.exit_code == 2 and "Traceback" not in nowhere.output
    keys_only = tmp_path / "keys-only"
    keys_only.mkdir()
    (keys_only / "keys").symlink_to(tmp_path / "keys")
    if database is None:
        empty = runner.invoke(main, ["registry", "fsck", "--data", str(keys_only)])
        assert empty.exit_code == 2 and "holds no registry.sqlite3" in empty.output
        assert not (keys_only / "registry.sqlite3").exists()  # nothing created to call intact
    else:
        # A database the server does not hold: refused, not a traceback.
        name = f"sqm_test_missing_{uuid.uuid4().hex[:12]}"
        missing = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        empty = runner.invoke(
            main, ["registry", "fsck", "--data", str(keys_only), "--database", missing]
        )
        assert empty.exit_code == 2 and "cannot read the registry's database" in empty.output
        assert "Traceback" not in empty.output
        # A database that exists but holds no registry (a wrong URL): neither fsck nor a
        # check of the index may create the tables and call the empty log intact.
        with fresh_postgres_database() as blank:
            for command in (["fsck"], ["reindex", "--check"]):
                refused = runner.invoke(
                    main, ["registry", *command, "--data", str(tmp_path), "--database", blank]
                )
                assert refused.exit_code == 2, refused.output
                assert "holds no registry (no log_entries table)" in refused.output
                assert "postgres@" not in refused.output  # no credentials echoed
            blank_engine = create_engine(blank)
            with blank_engine.connect() as connection:
                assert inspect(connection).get_table_names() == []
            blank_engine.dispose()
    reindexed = runner.invoke(main, ["registry", "reindex", "--check", "--data", str(keys_only)])
    if database is None:
        assert reindexed.exit_code == 2 and "holds no registry.sqlite3" in reindexed.output
    for unusable in ("notaurl", f"sqlite:///{tmp_path / 'keys' / 'log.key'}"):
        unreadable = runner.invoke(
            main, ["registry", "fsck", "--data", str(tmp_path), "--database", unusable]
        )
        assert unreadable.exit_code == 2, unreadable.output
        assert "cannot read the registry's database" in unreadable.output


def test_gunicorn_serves_the_registry_with_two_workers(
    tmp_path: Path, database: str | None
) -> None:
    seeded = _seeded(tmp_path, database=database)
    seeded.extensions["sqm"]["log"].engine.dispose()  # type: ignore[attr-defined]
    port = free_port()
    env = {**os.environ, "SQM_REGISTRY_DATA": str(tmp_path)}
    env.pop("SQM_REGISTRY_DATABASE", None)
    if database is not None:
        env["SQM_REGISTRY_DATABASE"] = database
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "sqm.registry.wsgi:app"]
    server = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        document = json.loads(first_answer(server, f"http://127.0.0.1:{port}/api/v1/bundles/1"))
        assert document["logIndex"] == 1 and document["inclusionProof"]["treeSize"] == 6
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_the_operator_can_revoke_a_key_without_the_key(tmp_path: Path) -> None:
    import base64

    from sqm.trust import bundle

    app = _seeded(tmp_path, token="s3cret")
    client = app.test_client()  # type: ignore[attr-defined]
    made = bundle.Bundle.from_json(client.get("/api/v1/bundles/1").json)
    key_id = json.loads(made.key.leaf)["keyId"]
    response = client.post(
        f"/api/v1/keys/{key_id}/revocation",
        json={"revokedAt": "2026-11-03T09:30:00+01:00"},
        headers={"Authorization": "Bearer s3cret"},
    )
    assert response.status_code == 201, response.json
    leaf = json.loads(base64.b64decode(response.json["leaf"]))
    assert leaf["kind"] == "key-revocation" and leaf["by"] == "operator" and leaf["keyId"] == key_id
    root = bundle.TrustRoot.from_json(client.get("/api/v1/trust-root").json)
    report = bundle.verify(bundle.Bundle.from_json(client.get("/api/v1/bundles/1").json), root)
    assert not report.ok and report.steps[-1].name == "key valid when logged"
