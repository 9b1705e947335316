"""The web pages in a real browser (Chromium driven by Playwright), on both databases: pages
render, filters and pagination work with and without JavaScript, charts draw one point per
attestation, the attestation page verifies its bundle, bad input gets a clear 4xx page, and no
page logs a console error."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import Engine

from sqm.client import requests
from sqm.registry.app import create_app
from sqm.registry.config import RegistryConfig
from sqm.registry.ingest import Ingest
from sqm.registry.seed import seed
from tests.conftest import EXAMPLES
from tests.registry.servers import serving

KRAFTWERK = "LEI:529900SQMKRAFTWERK41"
MEKONG = "LEI:724500SQMAGROFOODS94"
SELATAN = "LEI:254900SQMELEKTRONX93"
ENDORSER = {
    "name": "Certa Industrie-Zertifizierung GmbH",
    "identifiers": [{"scheme": "LEI", "code": "529900SQMCERTBODY123"}],
    "country": "DE",
}
# Kraftwerk's feeds before the example's (sequence 14): months earlier, other delivery figures.
EARLIER = ((12, 60, 97.1), (13, 30, 97.9))
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@dataclass
class Site:
    base: str
    app: Flask
    latest: int  # Kraftwerk's latest attestation


def _shifted(value: Any, delta: timedelta) -> Any:
    """A feed with every date and time moved by ``delta``."""
    if isinstance(value, dict):
        return {k: _shifted(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, delta) for v in value]
    if isinstance(value, str) and _DATETIME.match(value):
        return (datetime.fromisoformat(value) + delta).isoformat()
    if isinstance(value, str) and _DATE.match(value):
        return (date.fromisoformat(value) + delta).isoformat()
    return value


def _attest_at(ingest: Ingest, feed: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    clock = ingest.now
    issued = datetime.fromisoformat(feed["header"]["issued_at"])
    ingest.now = lambda: issued + timedelta(hours=1)
    try:
        status, answer = ingest.attest(requests.attestation(feed, key).to_json())
    finally:
        ingest.now = clock
    assert status == 201, answer
    return answer


def _earlier_feeds(ingest: Ingest, key_folder: Path) -> None:
    """Register Kraftwerk with the key seeding will use, and log two earlier monthly feeds."""
    key = Ed25519PrivateKey.generate()
    key_folder.mkdir(parents=True)
    path = key_folder / f"{KRAFTWERK.replace(':', '_')}.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    example = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    clock = ingest.now
    ingest.now = lambda: datetime.fromisoformat(example["header"]["issued_at"]) - timedelta(days=90)
    try:
        ingest.register_supplier(requests.registration(example["header"]["supplier"], key))
    finally:
        ingest.now = clock
    for sequence, days, on_time in EARLIER:
        feed = _shifted(example, timedelta(days=-days))
        feed["header"]["sequence"] = sequence
        feed["header"]["feed_id"] = f"urn:uuid:00000000-0000-4000-8000-0000000000{sequence}"
        feed["header"]["previous_feed"] |= {
            "feed_id": f"urn:uuid:00000000-0000-4000-8000-0000000000{sequence - 1}",
            "sequence": sequence - 1,
        }
        feed["delivery_records"][0]["on_time_percent"] = on_time
        feed["delivery_records"][0]["otif_percent"] = on_time - 0.5
        _attest_at(ingest, feed, key)


@pytest.fixture
def site(engine: Engine, tmp_path: Path) -> Iterator[Site]:
    """A served registry: the examples seeded, Kraftwerk with three monthly feeds and its
    latest endorsed by a third party, Mekong and the third party verified by the operator."""
    url = engine.url.render_as_string(hide_password=False)
    app = create_app(
        RegistryConfig(data_dir=tmp_path / "registry", database_url=url, operator_token="op")
    )
    ingest: Ingest = app.extensions["sqm"]["ingest"]
    _earlier_feeds(ingest, tmp_path / "seed-keys")
    seed(ingest, EXAMPLES / "feeds", tmp_path / "seed-keys")
    client = app.test_client()
    profile = client.get(f"/api/v1/suppliers/{KRAFTWERK}").get_json()
    assert profile is not None
    latest = profile["latest"]
    endorser_key = Ed25519PrivateKey.generate()
    ingest.register_supplier(requests.registration(ENDORSER, endorser_key), role="endorser")
    endorsement = requests.endorsement(
        "LEI:529900SQMCERTBODY123",
        latest["logIndex"],
        latest["payloadSha256"],
        "third_party",
        endorser_key,
    )
    ingest.endorse(endorsement.to_json())
    # Mekong, and the endorser: only a verified endorser's word raises the assurance shown.
    for identity in (MEKONG, "LEI:529900SQMCERTBODY123"):
        verified = client.put(
            f"/api/v1/operator/suppliers/{identity}/verification",
            json={"status": "verified"},
            headers={"Authorization": "Bearer op"},
        )
        assert verified.status_code == 200
    with serving(app) as base:
        yield Site(base, app, latest["logIndex"])
    app.extensions["sqm"]["sparql"].stop()
    app.extensions["sqm"]["log"].engine.dispose()


@contextmanager
def browsing(browser: Browser, javascript: bool = True, status: int = 200) -> Iterator[Page]:
    """A page whose console errors and uncaught exceptions fail the test; Chromium's own note
    of an error status is expected on a page that should answer with it."""
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        yield page
    finally:
        context.close()
    expected = f"Failed to load resource: the server responded with a status of {status} "
    assert [p for p in problems if not (status >= 400 and p.startswith(expected))] == []


def _visit(page: Page, url: str, status: int = 200) -> None:
    response = page.goto(url)
    assert response is not None and response.status == status, url


def _found(page: Page) -> list[str]:
    return [
        re.sub(r"\s+", " ", text).strip()
        for text in page.locator("table.results tbody th code.id").all_inner_texts()
    ]


def _accessible(page: Page) -> None:
    assert page.get_attribute("html", "lang") == "en"
    for landmark in ("header", "nav", "main", "footer"):
        assert page.locator(landmark).count() >= 1, landmark
    unlabelled = page.evaluate(
        "Array.from(document.querySelectorAll('input, select, textarea'))"
        ".filter(e => e.labels.length === 0).map(e => e.name)"
    )
    assert unlabelled == []
    headless = page.evaluate(
        "Array.from(document.querySelectorAll('th')).filter(th => "
        "th.closest('thead') ? th.scope !== 'col' : th.scope !== 'row').length"
    )
    assert headless == 0
    # The stylesheet is served: the header is dark blue.
    background = page.evaluate(
        "getComputedStyle(document.querySelector('.site-header')).backgroundColor"
    )
    assert background == "rgb(19, 41, 75)"


def test_home_and_log_pages(site: Site, browser: Browser) -> None:
    with browsing(browser) as page:
        _visit(page, site.base + "/")
        _accessible(page)
        expect(page.locator("h1")).to_have_text("Supplier quality you can check")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
        checkpoint = urllib.request.urlopen(site.base + "/api/v1/log/checkpoint").read().decode()
        size = checkpoint.splitlines()[1]
        expect(page.locator(".checkpoint-size")).to_have_text(size)
        expect(page.locator("dl.facts")).to_contain_text("RFC 3161 token checked")
        expect(page.locator("a[href='/api/v1/trust-root']").first).to_be_visible()

        page.get_by_role("link", name="Log", exact=True).click()
        expect(page.locator("h1")).to_have_text("The transparency log")
        _accessible(page)
        expect(page.locator(".checkpoint-size")).to_have_text(size)
        expect(page.locator("pre.note")).to_contain_text(checkpoint.splitlines()[2])
        assert page.locator("table tbody tr").count() == 5  # 3 + 2 earlier attestations
        page.locator("table tbody a", has_text="Kraftwerk").first.click()
        expect(page.locator("h1")).to_have_text("Kraftwerk Präzisionsteile GmbH")


def test_search_filters_and_pagination(site: Site, browser: Browser) -> None:
    with browsing(browser) as page:
        _visit(page, site.base + "/suppliers")
        _accessible(page)
        assert _found(page) == [SELATAN, KRAFTWERK, MEKONG]
        # The form: Cpk of every value at least 1.6 leaves only Mekong (1.72).
        page.select_option("#metric-1", "capability_records.cpk")
        page.select_option("#op-1", ">=")
        page.fill("#threshold-1", "1.6")
        page.get_by_role("button", name="Search").click()
        assert "where=capability_records.cpk%3E%3D1.6" in page.url
        assert _found(page) == [MEKONG]
        expect(page.locator("table.results")).to_contain_text("1.72")
        expect(page.locator("table.results")).to_contain_text("Verified")
        expect(page.locator("#threshold-1")).to_have_value("1.6")  # the form keeps the search
        api = page.locator("a", has_text="These results as JSON").get_attribute("href")
        assert api == "/api/v1/search/suppliers?where=capability_records.cpk%3E%3D1.6"
        # A country filter (Kraftwerk has a site in Mexico), typed in lower case.
        _visit(page, site.base + "/suppliers")
        page.fill("#country", "mx")
        page.get_by_role("button", name="Search").click()
        assert page.url.endswith("/suppliers?country=MX")
        assert _found(page) == [KRAFTWERK]
        # Pagination with the cursor: one per page, in order, then no next page.
        _visit(page, site.base + "/suppliers?limit=1")
        seen = _found(page)
        while page.get_by_role("link", name="Next page").count():
            page.get_by_role("link", name="Next page").click()
            seen += _found(page)
            expect(page.get_by_role("link", name="First page")).to_be_visible()
        assert seen == [SELATAN, KRAFTWERK, MEKONG]


def test_search_works_without_javascript(site: Site, browser: Browser) -> None:
    with browsing(browser, javascript=False) as page:
        _visit(page, site.base + "/")
        page.select_option("#metric-1", "delivery_records.on_time_percent")
        page.fill("#threshold-1", "98")
        page.select_option("#certification", "IATF_16949")
        page.get_by_role("button", name="Search").click()
        assert _found(page) == [KRAFTWERK]
        page.locator("a.supplier-link").click()
        expect(page.locator("h1")).to_have_text("Kraftwerk Präzisionsteile GmbH")
        assert page.locator("#chart-on-time .point").count() == 3


def test_bad_input_gets_a_clear_4xx_page(site: Site, browser: Browser) -> None:
    cases = [
        ("/suppliers?where=capability_records.nope%3E%3D1", 400, "unknown_metric"),
        ("/suppliers?where=capability_records.cpk%3E%3D1.33%3B%20DROP%20TABLE%20suppliers", 400,
         "invalid_condition"),
        ("/suppliers?limit=100000", 400, "invalid_parameter"),
        ("/suppliers?country=DE%27%20OR%20%271%27%3D%271", 400, "invalid_parameter"),
        ("/suppliers?colour=red", 400, "unknown_parameter"),
        ("/suppliers?cursor=not-a-cursor", 400, "invalid_cursor"),
        ("/suppliers?metric=capability_records.cpk&op=%3D%3D&threshold=1", 400,
         "invalid_condition"),
        ("/suppliers?as_of=%00", 400, "nul_character"),
        ("/suppliers?q=" + "x" * 4100, 400, "request_too_large"),
        (f"/suppliers/{KRAFTWERK}?as_of=soon", 400, "invalid_parameter"),
        (f"/suppliers/{KRAFTWERK}?as_of=9999-12-31T23:59:59-23:59", 400, "invalid_parameter"),
        (f"/suppliers/{KRAFTWERK}?page=2", 400, "unknown_parameter"),
        ("/suppliers/LEI:NOBODY", 404, "no_such_supplier"),
        ("/attestations/abc", 400, "invalid_log_index"),
        ("/attestations/99999999999999999999999", 400, "invalid_log_index"),
        ("/attestations/0", 404, "no_such_attestation"),  # a key registration
        ("/attestations/9223372036854775807", 404, "no_such_attestation"),
        ("/log?size=-1", 400, "unknown_parameter"),
    ]  # fmt: skip
    # A cursor edited by hand: still this search's, but naming a time that is none.
    answer = json.load(
        urllib.request.urlopen(site.base + "/api/v1/search/suppliers?sort=issued_at&limit=1")
    )
    cursor = answer["next"]
    token = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**token, "k": "garbage"}).encode()).decode()
    cases.append((f"/suppliers?sort=issued_at&limit=1&cursor={forged}", 400, "invalid_cursor"))
    for path, status, code in cases:
        try:
            urllib.request.urlopen(site.base + path)
        except urllib.error.HTTPError as error:
            body = error.read().decode()
            assert (error.code, error.headers.get_content_type()) == (status, "text/html"), path
            assert f'<code class="error-code">{code}</code>' in body, (path, body[-2000:])
        else:
            raise AssertionError(f"{path} was answered 200")
    # In the browser: the message says what is wrong and the form is there to fix it.
    with browsing(browser, status=400) as page:
        response = page.goto(site.base + "/suppliers?where=capability_records.nope%3E%3D1")
        assert response is not None and response.status == 400
        expect(page.get_by_role("alert")).to_contain_text("is not a metric of the standard")
        expect(page.locator("#threshold-1")).to_have_value("1")
        # The unknown metric stays selected, so the user sees what was asked.
        assert page.locator("#metric-1").input_value() == "capability_records.nope"


def test_supplier_page_identity_metrics_and_charts(site: Site, browser: Browser) -> None:
    with browsing(browser) as page:
        _visit(page, f"{site.base}/suppliers/{KRAFTWERK}")
        _accessible(page)
        expect(page.locator("h1")).to_have_text("Kraftwerk Präzisionsteile GmbH")
        expect(page.locator(".identity-line .badge-unverified")).to_contain_text("Unverified")
        expect(page.locator(".verification-note")).to_contain_text("Nobody has checked")
        expect(page.locator("#identity-heading + dl")).to_contain_text("529900SQMKRAFTWERK41")
        expect(page.locator("table", has_text="Sites named")).to_contain_text("Stuttgart")
        expect(page.locator("table.certifications")).to_contain_text("IATF 16949")
        headline = page.locator("table.metrics").first
        expect(headline).to_contain_text("capability_records.cpk")
        expect(headline).to_contain_text("98.4")
        expect(page.locator("table.history tbody tr")).to_have_count(3)
        expect(page.locator("table.history")).not_to_contain_text("gap")
        # One point per attestation for a metric the feed states once; Cpk has a series per
        # characteristic (four), each with a point per attestation.
        on_time = page.locator("#chart-on-time")
        expect(on_time.locator(".point")).to_have_count(3)
        values = [float(v) for v in on_time.locator(".point").evaluate_all(
            "ps => ps.map(p => p.dataset.value)")]  # fmt: skip
        assert values == [on_time for _, _, on_time in EARLIER] + [98.4]
        expect(page.locator("#chart-capability .series")).to_have_count(4)
        expect(page.locator("#chart-capability .point")).to_have_count(12)
        expect(page.locator("#chart-ppm .point")).to_have_count(6)
        expect(page.locator("#chart-lead-time .point")).to_have_count(6)
        # Drawn: each point is on screen, inside its chart, the line rises with the values.
        box = on_time.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 80
        boxes = [on_time.locator(".point").nth(i).bounding_box() for i in range(3)]
        assert all(b is not None and b["width"] > 0 for b in boxes)
        xs = [b["x"] for b in boxes if b]
        ys = [b["y"] for b in boxes if b]
        assert xs == sorted(xs) and ys == sorted(ys, reverse=True)
        assert on_time.locator("polyline").count() == 1
        assert "On-time delivery" in (on_time.locator("title").first.text_content() or "")
        # The same numbers as a table for screen readers.
        rows = page.locator("figure", has=on_time).locator("table.chart-data tbody tr")
        expect(rows).to_have_count(3)
        expect(page.locator("#chart-lead-time")).to_contain_text("days (DAY)")
        json_link = page.locator("a", has_text="This profile (JSON)").get_attribute("href")
        assert json_link == f"/api/v1/suppliers/{KRAFTWERK}"
        # As of a date before the last feed, the page shows the supplier as it was then.
        _visit(page, f"{site.base}/suppliers/{KRAFTWERK}?as_of=2026-10-15")
        expect(page.locator("table.history tbody tr")).to_have_count(2)
        expect(page.locator("#chart-on-time .point")).to_have_count(2)


def test_attestation_page_verifies_its_bundle(site: Site, browser: Browser) -> None:
    with browsing(browser) as page:
        _visit(page, f"{site.base}/attestations/{site.latest}")
        _accessible(page)
        expect(page.locator(".verdict")).to_have_text("✓ the bundle verifies")
        steps = page.locator("table.steps tbody tr")
        assert steps.count() >= 10
        expect(page.locator("table.steps .fail-mark")).to_have_count(0)
        expect(page.locator("table.steps")).to_contain_text("feed valid")
        expect(page.locator("table.steps")).to_contain_text("timestamp token")
        expect(page.locator("#verify-heading ~ .notice")).to_contain_text("sqm verify")
        size = urllib.request.urlopen(site.base + "/api/v1/log/checkpoint").read().decode()
        expect(page.locator(".checkpoint-size")).to_have_text(size.splitlines()[1])
        expect(page.locator("dl.facts").first).to_contain_text("UTC (RFC 3161)")
        expect(page.locator(".endorsed")).to_have_text("third party")
        expect(page.locator("table", has_text="Endorsements logged")).to_contain_text(
            "LEI:529900SQMCERTBODY123"
        )
        expect(page.locator("table", has_text="DSSE signatures")).to_contain_text("current")
        records = page.locator("#section-capability_records table")
        expect(records).to_be_hidden()  # until its section is opened
        page.locator("#section-capability_records summary").click()
        expect(records).to_contain_text("cap-p100-bore-2026-10")
        expect(records).to_contain_text("instrumented_feed")  # the claimed assurance
        bundle = page.locator("a", has_text="Offline bundle (JSON)").get_attribute("href")
        assert bundle == f"/api/v1/bundles/{site.latest}"
        # The previous attestation of the supplier is one click away.
        page.locator("a", has_text=re.compile(r"^entry \d+$")).click()
        expect(page.locator("h1")).to_contain_text("Attestation")
        expect(page.locator(".verdict")).to_have_text("✓ the bundle verifies")
