"""`sqm mcp` driven by the mcp package's own client (ClientSession over stdio, and over
streamable HTTP), against a live registry seeded with the examples on both databases: the
tools answer with verified content, and every failure is a tool error the agent can act on,
never a dead server."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent
from sqlalchemy import Engine

from sqm.client import RegistryClient
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.facts import ASSURANCE_ORDER
from sqm.registry.query import CHARACTERISTIC_CLASSES, SORTS
from sqm.registry.seed import seed
from sqm.trust.bundle import TrustRoot
from tests.conftest import EXAMPLES, INVALID_DIR, REPO
from tests.registry.servers import free_port, serving

KRAFTWERK = "LEI:529900SQMKRAFTWERK41"
AUDITOR_ID = "LEI:529900SQMCERTBODY123"
AUDITOR = {
    "name": "Certa Industrie-Zertifizierung GmbH",
    "identifiers": [{"scheme": "LEI", "code": "529900SQMCERTBODY123"}],
    "country": "DE",
}
TOOLS = {
    "search_suppliers",
    "list_metrics",
    "get_supplier_profile",
    "fetch_and_verify_bundle",
    "explain_finding",
    "validate_feed",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Tamper:
    """WSGI middleware that, while ``on``, corrupts the supplier's signature in every bundle
    the registry serves (as a compromised or buggy registry might)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.on = False

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if not self.on or not environ["PATH_INFO"].startswith("/api/v1/bundles/"):
            return self.app(environ, start)
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        answer = json.loads(b"".join(self.app(environ, keep)))
        signature = answer["envelope"]["signatures"][0]
        raw = bytearray(base64.b64decode(signature["sig"]))
        raw[0] ^= 0xFF
        signature["sig"] = base64.b64encode(bytes(raw)).decode()
        body = json.dumps(answer).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def registry(engine: Engine, tmp_path: Path) -> Iterator[tuple[str, Path, Tamper]]:
    """A seeded registry served over HTTP, its trust root in a file, and its tamperer."""
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(RegistryConfig(data_dir=tmp_path / "registry", database_url=url))
    seed(app.extensions["sqm"]["ingest"], EXAMPLES / "feeds", tmp_path / "seed-keys")
    root = tmp_path / "trust-root.json"
    root.write_text(json.dumps(app.extensions["sqm"]["log"].trust_root().to_json()))
    tamper = Tamper(app)
    with serving(tamper) as base:
        yield base, root, tamper


@contextlib.asynccontextmanager
async def stdio_session(args: list[str], errlog: Path) -> AsyncIterator[ClientSession]:
    """A ClientSession with `python -m sqm mcp ARGS` spawned as the server."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "sqm", "mcp", *args], cwd=str(REPO)
    )
    with errlog.open("w") as log:
        async with (
            stdio_client(params, errlog=log) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def _data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, _text(result)
    assert isinstance(result.structured_content, dict)
    # The text content carries the same answer for clients that ignore structured content.
    assert json.loads(_text(result)) == result.structured_content
    return result.structured_content


def _text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def _error(result: CallToolResult) -> str:
    assert result.is_error, _text(result)
    return _text(result)


@pytest.mark.anyio
async def test_tools_answer_with_verified_content(
    registry: tuple[str, Path, Tamper], tmp_path: Path
) -> None:
    base, root, tamper = registry
    async with stdio_session(
        ["--registry", base, "--trust-root", str(root)], tmp_path / "mcp.log"
    ) as session:
        assert session.server_info is not None and session.server_info.name == "sqm-registry"
        assert "fetch_and_verify_bundle" in (session.instructions or "")

        # Discovery: every tool, read-only, with descriptions an agent can work from.
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(listed) == TOOLS
        search = listed["search_suppliers"]
        assert "capability_records.cpk>=1.33" in (search.description or "")
        assert "not authoritative" in (search.description or "")
        properties = search.input_schema["properties"]
        assert {"where", "country", "certification", "as_of", "limit", "cursor"} <= set(properties)
        assert "METRIC OPERATOR NUMBER [UNIT]" in properties["where"]["description"]
        assert all(tool.annotations and tool.annotations.read_only_hint for tool in listed.values())

        # The metric catalogue, to build conditions from.
        metrics = _data(await session.call_tool("list_metrics", {}))
        by_name = {m["name"]: m for m in metrics["metrics"]}
        assert by_name["capability_records.cpk"]["unitBearing"] is False
        assert by_name["lead_time_records.quoted_lead_time"]["unitBearing"] is True
        assert {"DAY", "WEE"} <= {u["code"] for u in metrics["units"]["time"]}
        lead = _data(await session.call_tool("list_metrics", {"section": "lead_time_records"}))
        assert lead["count"] == 7 and {m["section"] for m in lead["metrics"]} == {
            "lead_time_records"
        }
        assert "no section" in _error(await session.call_tool("list_metrics", {"section": "x"}))

        # Search: hits whose log entries the client proved in the signed checkpoint.
        found = _data(
            await session.call_tool(
                "search_suppliers", {"where": ["capability_records.cpk>=1.33"], "country": "DE"}
            )
        )
        assert [hit["supplier"] for hit in found["hits"]] == [KRAFTWERK]
        hit = found["hits"][0]
        assert hit["matches"][0]["min"] == 1.54 and hit["matches"][0]["values"] == 4
        assert hit["identityVerification"] == "unverified"
        assert hit["bundle"] == f"{base}/api/v1/bundles/{hit['logIndex']}"
        checkpoint = found["verification"]["checkpoint"]
        assert checkpoint["size"] > hit["logIndex"]
        assert hit["proof"].startswith(f"verified: log entry {hit['logIndex']} is included")
        assert found["verification"]["trustRoot"].startswith("pinned")
        weeks = _data(
            await session.call_tool(
                "search_suppliers", {"where": ["lead_time_records.quoted_lead_time<=3 WEE"]}
            )
        )
        assert [h["supplier"] for h in weeks["hits"]] == [KRAFTWERK]
        assert weeks["hits"][0]["matches"][0]["unit"] == "WEE"
        first = _data(await session.call_tool("search_suppliers", {"limit": 2}))
        assert first["count"] == 2 and first["nextCursor"]
        rest = _data(
            await session.call_tool("search_suppliers", {"limit": 2, "cursor": first["nextCursor"]})
        )
        assert rest["count"] == 1 and rest["nextCursor"] is None

        # The registry's refusals, with its stable error codes.
        bad = _error(await session.call_tool("search_suppliers", {"where": ["cpk is great"]}))
        assert "HTTP 400, error code invalid_condition" in bad and "METRIC OPERATOR" in bad
        unknown = _error(
            await session.call_tool("search_suppliers", {"where": ["capability_records.cpkk>=1"]})
        )
        assert "unknown_metric" in unknown and "capability_records.cpk" in unknown
        unitless = _error(
            await session.call_tool(
                "search_suppliers", {"where": ["lead_time_records.quoted_lead_time<=3"]}
            )
        )
        assert "unit_required" in unitless
        assert "limit" in _error(await session.call_tool("search_suppliers", {"limit": 1000}))
        assert "characteristic_class" in _error(
            await session.call_tool("search_suppliers", {"characteristic_class": "vital"})
        )

        # The profile: identity status spelt out, the latest attestation verified.
        profile = _data(await session.call_tool("get_supplier_profile", {"supplier": KRAFTWERK}))
        assert profile["identityVerification"]["status"] == "unverified"
        assert "UNVERIFIED IDENTITY" in profile["identityVerification"]["meaning"]
        assert profile["latest"]["logIndex"] == hit["logIndex"]
        verified = profile["latestVerified"]
        assert verified["bundleVerified"] is True and verified["indexMatchesSignedFeed"] is True
        assert verified["stepsPassed"] >= 10 and verified["differences"] == []
        assert "IATF_16949" in {c["scheme"] for c in profile["certifications"]}
        assert profile["historyChain"]["intact"] is True
        nobody = _error(
            await session.call_tool("get_supplier_profile", {"supplier": "LEI:NOBODY00000000000"})
        )
        assert "HTTP 404, error code no_such_supplier" in nobody

        # The bundle, step by step, and the facts of its signed feed.
        bundle = _data(
            await session.call_tool("fetch_and_verify_bundle", {"log_index": hit["logIndex"]})
        )
        steps = {step["name"]: step for step in bundle["steps"]}
        assert bundle["verified"] is True and all(step["passed"] for step in bundle["steps"])
        assert {
            "checkpoint signature", "timestamp token", "envelope signature",
            "attestation included", "key valid when logged", "feed names its signer", "feed valid",
        } <= set(steps)  # fmt: skip
        assert bundle["checkpointSize"] == checkpoint["size"]
        assert bundle["timestamp"] and bundle["loggedAt"]
        facts = bundle["feed"]
        assert facts["supplier"]["id"] == KRAFTWERK and facts["sequence"] == 14
        cpk = next(m for m in facts["metrics"] if m["metric"] == "capability_records.cpk")
        assert (cpk["min"], cpk["max"], cpk["values"]) == (1.54, 1.83, 4)
        assert "fullFeed" not in bundle
        whole = _data(
            await session.call_tool(
                "fetch_and_verify_bundle", {"log_index": hit["logIndex"], "include_feed": True}
            )
        )
        assert whole["fullFeed"]["header"]["sequence"] == 14
        key_entry = _error(await session.call_tool("fetch_and_verify_bundle", {"log_index": 0}))
        assert "error code no_such_attestation" in key_entry
        # An endorsement's entry has a bundle too, but no feed: the tool names what it endorses.
        auditor = Ed25519PrivateKey.generate()
        client = RegistryClient(base, TrustRoot.from_json(json.loads(root.read_text())))
        client.register(AUDITOR, auditor, endorser=True)
        endorsed = client.endorse(AUDITOR_ID, hit["logIndex"], "third_party", auditor)
        endorsement = _error(
            await session.call_tool("fetch_and_verify_bundle", {"log_index": endorsed["logIndex"]})
        )
        assert (
            f"log entry {endorsed['logIndex']} is an endorsement of entry {hit['logIndex']} "
            "(third_party), not an attestation"
        ) in endorsement

        # A registry that serves a forged signature: every step reported, nothing relied on.
        tamper.on = True
        try:
            forged = _error(
                await session.call_tool("fetch_and_verify_bundle", {"log_index": hit["logIndex"]})
            )
            profile_forged = _error(
                await session.call_tool("get_supplier_profile", {"supplier": KRAFTWERK})
            )
        finally:
            tamper.on = False
        assert "VERIFICATION FAILED" in forged and "does NOT verify" in forged
        assert "PASS  checkpoint signature" in forged and "FAIL  envelope signature" in forged
        assert "VERIFICATION FAILED" in profile_forged

        # Findings explained from the validator's rules registry.
        explained = _data(await session.call_tool("explain_finding", {"code": "SQM-E003"}))
        assert explained["severity"] == "error" and explained["layer"] == "semantics"
        assert "Cpk above Cp" in explained["title"]
        assert "Cpk = Cp only for a perfectly centred process" in explained["howToFix"]
        assert "invalid" in explained["whyItMatters"]
        assert explained["failingExample"] == "{cp: 1.40, cpk: 1.52}"
        assert explained["passingExample"] == "{cp: 1.58, cpk: 1.52}"
        lower = _data(await session.call_tool("explain_finding", {"code": " sqm-e003 "}))
        assert lower["code"] == "SQM-E003"
        no_rule = _error(await session.call_tool("explain_finding", {"code": "SQM-E999"}))
        assert "unknown rule code 'SQM-E999'" in no_rule and "SQM-E003" in no_rule
        assert "e.g. SQM-E003" in _error(await session.call_tool("explain_finding", {"code": "E3"}))

        # Local validation, findings with codes the agent can explain.
        valid = _data(
            await session.call_tool(
                "validate_feed",
                {"feed": (EXAMPLES / "feeds" / "automotive-machining.json").read_text()},
            )
        )
        assert valid["valid"] is True and valid["counts"]["error"] == 0
        case = yaml.safe_load((INVALID_DIR / "capability-cpk-as-string.expected.yaml").read_text())
        invalid = _data(
            await session.call_tool(
                "validate_feed", {"feed": (INVALID_DIR / case["file"]).read_text()}
            )
        )
        found_at = {(f["code"], f["pointer"]) for f in invalid["findings"]}
        assert invalid["valid"] is False and (case["code"], case["pointer"]) in found_at
        assert "unknown profile" in _error(
            await session.call_tool("validate_feed", {"feed": "{}", "profiles": ["nonesuch"]})
        )

        # After all those errors the server still answers.
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS


def test_closed_vocabularies_match_the_registry() -> None:
    """The enums in the tools' schemas are the registry's own: no drift between them."""
    from sqm.mcp.server import Assurance, CharacteristicClass, Sort

    def literals(annotation: Any) -> set[str]:
        args = get_args(annotation)
        if not args:
            return {annotation} if isinstance(annotation, str) else set()
        return set().union(*(literals(arg) for arg in args))

    assert literals(CharacteristicClass) == set(CHARACTERISTIC_CLASSES)
    assert literals(Assurance) == set(ASSURANCE_ORDER)
    assert literals(Sort) == set(SORTS)


@pytest.mark.anyio
async def test_an_unreachable_registry_is_a_tool_error(tmp_path: Path) -> None:
    """No registry: remote tools say so (the server keeps running), local tools still work."""
    gone = f"http://127.0.0.1:{free_port()}"
    async with stdio_session(["--registry", gone], tmp_path / "mcp.log") as session:
        down = _error(await session.call_tool("search_suppliers", {"where": []}))
        assert "could not be reached (unreachable)" in down
        assert "could not be reached" in _error(
            await session.call_tool("fetch_and_verify_bundle", {"log_index": 1})
        )
        explained = _data(await session.call_tool("explain_finding", {"code": "SQM-S002"}))
        assert explained["severity"] == "error"


@pytest.mark.anyio
@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
async def test_streamable_http_transport(
    registry: tuple[str, Path, Tamper], tmp_path: Path
) -> None:
    base, root, _ = registry
    port = free_port()
    log = (tmp_path / "http.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "sqm", "mcp", "--registry", base, "--trust-root", str(root),
         "--transport", "streamable-http", "--port", str(port)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for_port(server, port)
        url = f"http://127.0.0.1:{port}/mcp"
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            assert {t.name for t in (await session.list_tools()).tools} == TOOLS
            found = _data(
                await session.call_tool(
                    "search_suppliers", {"where": ["capability_records.cpk>=1.33"]}
                )
            )
            assert KRAFTWERK in {hit["supplier"] for hit in found["hits"]}
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _wait_for_port(server: subprocess.Popen[str], port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if server.poll() is not None:
                raise AssertionError(f"sqm mcp exited with {server.returncode}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"sqm mcp did not listen on {port} in {seconds} s") from None
            time.sleep(0.1)
