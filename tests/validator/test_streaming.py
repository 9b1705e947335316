"""Streamed and non-JSON input: NDJSON framing and limits, stream sniffing, the document size
limit, RDF input, and the agreement of the two JSON Schema engines the structure layer uses.

Every input is made in tmp_path from the committed examples; nothing here is committed data.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from sqm.schema import profiles, rdf
from sqm.validator import Finding, iter_stream_findings, validate
from sqm.validator.layers.structure import _part
from sqm.validator.loaders import MAX_LINE_BYTES, load_path, loads_strict
from tests.conftest import EXAMPLES, NOW, REPO, VALID_FEEDS, load_feed

DATA = REPO / "tests" / "data"
ELECTRONICS = EXAMPLES / "feeds" / "electronics-assembly.json"
FOOD = EXAMPLES / "feeds" / "food-ingredients.yaml"
SEMANTIC_CASES = sorted((DATA / "invalid").glob("*.json"))


def ndjson_lines(feed: dict[str, Any]) -> list[str]:
    """A feed as NDJSON: the header line, then one line per item in document order."""
    lines = [json.dumps({"header": feed["header"]}, ensure_ascii=False)]
    for section, items in feed.items():
        if section != "header":
            lines += [json.dumps({section: item}, ensure_ascii=False) for item in items]
    return lines


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def located(findings: list[Finding]) -> list[tuple[str, str]]:
    """Codes and pointers, order-independent."""
    return sorted((f.code, f.pointer) for f in findings)


def header_line() -> str:
    return json.dumps({"header": load_feed(ELECTRONICS)["header"]})


def site_line(index: int = 0, **address: str) -> str:
    """A sites line: the electronics example's site ``index`` (0 or 1), address changed."""
    site = load_feed(ELECTRONICS)["sites"][index]
    site["address"].update(address)
    return json.dumps({"sites": site})


# --- NDJSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", VALID_FEEDS + SEMANTIC_CASES, ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_ndjson_form_gives_the_same_findings_as_the_document(path: Path, tmp_path: Path) -> None:
    feed = load_path(path).document
    ndjson = write_lines(tmp_path / "feed.ndjson", ndjson_lines(feed))
    document = validate(path, now=NOW).findings
    streamed = validate(ndjson, now=NOW).findings
    assert located(streamed) == located(document)


def test_ndjson_findings_carry_the_line_of_their_record(tmp_path: Path) -> None:
    lines = [header_line(), site_line(), site_line(1, country="UK")]
    [finding] = validate(write_lines(tmp_path / "feed.ndjson", lines), now=NOW).findings
    assert (finding.code, finding.pointer, finding.line) == (
        "SQM-E013",
        "/sites/1/address/country",
        3,
    )


def test_jsonl_suffix_is_read_as_ndjson(tmp_path: Path) -> None:
    lines = [header_line(), site_line(country="UK")]
    findings = validate(write_lines(tmp_path / "feed.jsonl", lines), now=NOW).findings
    assert [(f.code, f.line) for f in findings] == [("SQM-E013", 2)]


def test_over_long_ndjson_line_is_reported_and_later_lines_still_checked(tmp_path: Path) -> None:
    path = tmp_path / "long.ndjson"
    chunk = b"x" * (1024 * 1024)
    with path.open("wb") as out:  # a ~17 MiB line, written in 1 MiB pieces
        out.write(header_line().encode() + b"\n")
        out.write(b'{"sites": {"id": "site-long", "name": "')
        for _ in range(MAX_LINE_BYTES // len(chunk) + 1):
            out.write(chunk)
        out.write(b'"}}\n')
        out.write(site_line(country="UK").encode() + b"\n")
    assert path.stat().st_size > MAX_LINE_BYTES
    tracemalloc.start()
    try:
        findings = validate(path, now=NOW).findings
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(f.code, f.pointer, f.line) for f in findings] == [
        ("SQM-X005", "", 2),
        ("SQM-E013", "/sites/0/address/country", 3),
    ]
    # The line is read at most to the limit and the rest discarded in chunks; decoding and
    # parsing the whole line would cost several times its size.
    assert peak < 3 * MAX_LINE_BYTES


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        pytest.param(lambda: [site_line(), site_line(1)], 1, id="missing-header"),
        pytest.param(
            lambda: [header_line(), json.dumps({"sites": {}, "products": {}})],
            2,
            id="two-sections-on-one-line",
        ),
        pytest.param(lambda: [header_line(), "[1, 2]"], 2, id="array-line"),
        pytest.param(lambda: [header_line(), site_line(), header_line()], 3, id="second-header"),
    ],
)
def test_ndjson_framing_errors_are_x007(lines: Any, line: int, tmp_path: Path) -> None:
    findings = validate(write_lines(tmp_path / "feed.ndjson", lines()), now=NOW).findings
    framing = [f for f in findings if f.code == "SQM-X007"]
    assert [f.line for f in framing] == [line]
    assert framing[0].message and framing[0].hint


def test_ndjson_without_header_also_reports_the_missing_header(tmp_path: Path) -> None:
    findings = validate(write_lines(tmp_path / "feed.ndjson", [site_line()]), now=NOW).findings
    assert [(f.code, f.line) for f in findings] == [("SQM-X007", 1), ("SQM-S001", None)]


def test_ndjson_unknown_section_is_s002(tmp_path: Path) -> None:
    lines = [header_line(), json.dumps({"widgets": {"id": "w-1"}}), site_line()]
    findings = validate(write_lines(tmp_path / "feed.ndjson", lines), now=NOW).findings
    assert [(f.code, f.pointer, f.line) for f in findings] == [("SQM-S002", "/widgets", 2)]


def test_ndjson_broken_json_line_is_x001_at_its_line(tmp_path: Path) -> None:
    lines = [header_line(), site_line(), '{"sites": {"id": "site-x",}}', site_line(1, country="UK")]
    findings = validate(write_lines(tmp_path / "feed.ndjson", lines), now=NOW).findings
    assert [(f.code, f.line) for f in findings] == [("SQM-X001", 3), ("SQM-E013", 4)]


# --- whole documents --------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID_FEEDS, ids=lambda p: p.name)
def test_document_above_the_size_limit_is_x006(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sqm.validator.loaders.MAX_DOCUMENT_BYTES", 1024)
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    assert [f.code for f in validate(copy, now=NOW).findings] == ["SQM-X006"]
    streamed = list(iter_stream_findings(io.BytesIO(path.read_bytes()), now=NOW))
    assert [f.code for f in streamed] == ["SQM-X006"]


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALID_FEEDS, ids=lambda p: p.name)
def test_stream_of_a_document_is_checked_as_a_document(path: Path) -> None:
    streamed = list(iter_stream_findings(io.BytesIO(path.read_bytes()), now=NOW))
    assert located(streamed) == located(validate(path, now=NOW).findings)


def test_stream_sniffs_ndjson_and_json_documents() -> None:
    case = DATA / "invalid" / "capability-cpk-inflated.json"
    [in_document] = validate(case, now=NOW).findings
    lines = ndjson_lines(load_path(case).document)
    record_line = 1 + lines.index(next(line for line in lines if "capability_records" in line))

    ndjson = ("\n".join(lines) + "\n").encode()
    [from_ndjson] = iter_stream_findings(io.BytesIO(ndjson), "feed", now=NOW)
    [from_json] = iter_stream_findings(io.BytesIO(case.read_bytes()), "feed", now=NOW)

    assert from_ndjson.pointer == from_json.pointer == in_document.pointer
    assert from_ndjson.line == record_line  # a line of the NDJSON stream
    assert from_json.line == in_document.line != record_line  # a line of the JSON text


def test_stream_ndjson_framing_errors_are_reported() -> None:
    data = "\n".join([header_line(), json.dumps({"widgets": {}}), "{"]).encode()
    findings = list(iter_stream_findings(io.BytesIO(data), now=NOW))
    assert [(f.code, f.line) for f in findings] == [("SQM-S002", 2), ("SQM-X001", 3)]


def test_stream_of_a_minified_document_longer_than_a_line_is_checked_as_a_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A whole JSON document may be written on one line and exceed the NDJSON line limit
    # (16 MiB) while staying under the document limit (256 MiB); it must not be lost while
    # sniffing for NDJSON. The limit is lowered so that the input stays small.
    monkeypatch.setattr("sqm.validator.loaders.MAX_LINE_BYTES", 1024)
    minified = json.dumps(load_feed(ELECTRONICS), separators=(",", ":")).encode()
    assert b"\n" not in minified and len(minified) > 1024
    streamed = list(iter_stream_findings(io.BytesIO(minified), now=NOW))
    assert located(streamed) == located(validate(ELECTRONICS, now=NOW).findings)


def test_empty_stream_is_x004() -> None:
    assert [f.code for f in iter_stream_findings(io.BytesIO(b""), now=NOW)] == ["SQM-X004"]


# --- RDF ----------------------------------------------------------------------------------------


def test_turtle_with_a_syntax_error_is_x008(tmp_path: Path) -> None:
    path = tmp_path / "feed.ttl"
    path.write_text("@prefix sqm: <https://w3id.org/sqm/v0.1/> .\n<urn:x:feed> a sqm:Feed\n")
    [finding] = validate(path, now=NOW).findings
    assert finding.code == "SQM-X008"
    assert "turtle" in finding.message


def test_turtle_without_a_feed_node_is_x008(tmp_path: Path) -> None:
    path = tmp_path / "feed.ttl"
    path.write_text("@prefix sqm: <https://w3id.org/sqm/v0.1/> .\n<urn:x:site> a sqm:Site .\n")
    assert [f.code for f in validate(path, now=NOW).findings] == ["SQM-X008"]


def test_turtle_violating_the_shapes_is_s013(tmp_path: Path) -> None:
    feed = load_feed(ELECTRONICS)
    feed["capability_records"][0]["distribution"] = "gaussian"
    path = tmp_path / "feed.ttl"
    path.write_text(rdf.to_graph(feed).serialize(format="turtle"), encoding="utf-8")
    [finding] = validate(path, now=NOW).findings
    assert finding.code == "SQM-S013"
    assert "gaussian" in finding.message and "cap-spi-2026q3" in finding.message


def test_turtle_of_a_valid_feed_has_no_findings(tmp_path: Path) -> None:
    path = tmp_path / "feed.ttl"
    path.write_text(rdf.to_graph(load_feed(ELECTRONICS)).serialize(format="turtle"))
    assert validate(path, now=NOW).findings == []


# --- the two schema engines -------------------------------------------------------------------


def _feed_files() -> list[Path]:
    roots = [EXAMPLES / "feeds", EXAMPLES / "invalid", DATA]
    found = [
        p
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.suffix in (".json", ".yaml", ".ndjson") and not p.name.endswith(".expected.yaml")
    ]
    return [p for p in found if _items(p)]


def _items(path: Path) -> list[tuple[str, Any]]:
    """(section, item) for the header and every item of a feed; [] if it does not parse."""
    if path.suffix == ".ndjson":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [pair for line in lines if line.strip() for pair in loads_strict(line).items()]
    loaded = load_path(path)
    if not loaded.ok:
        return []
    document = loaded.document
    pairs = [("header", document["header"])] if "header" in document else []
    for section, value in document.items():
        if section != "header" and isinstance(value, list):
            pairs += [(section, item) for item in value]
    return pairs


@pytest.mark.parametrize("path", _feed_files(), ids=lambda p: str(p.relative_to(REPO)))
@pytest.mark.parametrize("profile", sorted(profiles()))
def test_jsonschema_rs_and_reference_jsonschema_agree_on_every_item(
    path: Path, profile: str
) -> None:
    checked = 0
    for section, item in _items(path):
        part = _part(profile, section)
        if part is None:
            continue
        fast = part.fast.is_valid(item)
        reference = not list(part.reference.iter_errors(item))
        assert fast == reference, f"{section}: {item.get('id') if isinstance(item, dict) else item}"
        checked += 1
    assert checked


def test_engine_agreement_covers_the_examples_and_the_data_cases() -> None:
    files = {p.relative_to(REPO).parts[:2] for p in _feed_files()}
    assert {("examples", "feeds"), ("examples", "invalid"), ("tests", "data")} <= files
    assert len(_feed_files()) >= len(VALID_FEEDS) + len(SEMANTIC_CASES)


def test_empty_and_header_late_feeds_read_the_same_serial_and_parallel(tmp_path: Path) -> None:
    from sqm.validator import iter_findings
    from tests.conftest import NOW as CLOCK

    header = json.dumps(
        {
            "header": json.loads((EXAMPLES / "feeds" / "electronics-assembly.json").read_text())[
                "header"
            ]
        }
    )
    site = json.dumps(
        {
            "sites": {
                "id": "s",
                "name": "S",
                "roles": ["manufacturing"],
                "address": {"country": "MY"},
            }
        }
    )
    cases = {
        "empty.ndjson": "",
        "late.ndjson": f"{site}\n{header}\n",
        "broken-first.ndjson": f"{{oops\n{header}\n{site}\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        serial = [(f.code, f.line, f.pointer, f.message) for f in iter_findings(path, now=CLOCK)]
        parallel = [
            (f.code, f.line, f.pointer, f.message) for f in iter_findings(path, now=CLOCK, jobs=2)
        ]
        assert serial == parallel, name
    empty = [f.code for f in iter_findings(tmp_path / "empty.ndjson", now=CLOCK)]
    assert empty == ["SQM-X004"]
    late = [f.code for f in iter_findings(tmp_path / "late.ndjson", now=CLOCK)]
    assert late.count("SQM-X007") == 1 and "SQM-S001" not in late
