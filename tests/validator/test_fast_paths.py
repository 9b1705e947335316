"""The validator's fast paths give exactly what the plain paths give.

Each shortcut taken for speed or memory on large feeds is checked here against the code it
stands in for: the block reader against ``readline``, the NDJSON line checker against the
part-by-part checker, the one compiled schema per line against the one per section, the root
shape against the whole schema, the own check digits against python-stdnum, the compact sets
and maps against Python's, and the parallel validator (restarting its workers) against the
serial one.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stdnum import ean, lei

from sqm.schema import json_schema, profiles
from sqm.validator import checkdigits, iter_findings, loaders, parallel
from sqm.validator.compact import DigestMap, DigestSet, MaxMap
from sqm.validator.context import CharacteristicSpec, CharacteristicTable
from sqm.validator.engine import check_parts
from sqm.validator.findings import Finding
from sqm.validator.layers.structure import (
    HEADER,
    _line_validator,
    _part,
    _root_shape,
    schema_validator,
)
from sqm.validator.loaders import iter_lines, iter_ndjson, load_path
from sqm.validator.ndjson import check_ndjson, iter_line_blocks
from tests.conftest import EXAMPLES, NOW, REPO

DATA = REPO / "tests" / "data"
BENCHMARKS = REPO / "benchmarks"


def _rows(findings: Iterator[Finding]) -> list[tuple[Any, ...]]:
    return [
        (
            f.code,
            f.severity,
            f.pointer,
            f.line,
            f.column,
            f.source,
            f.message,
            f.hint,
            repr(f.value),  # 1, 1.0 and True are equal values, but not the same finding
            f.record,
        )
        for f in findings
    ]


def _documents() -> list[Path]:
    roots = [EXAMPLES / "feeds", EXAMPLES / "invalid", DATA / "valid", DATA / "invalid"]
    return [p for root in roots for p in sorted(root.glob("*.json"))]


def _ndjson(document: dict[str, Any]) -> list[bytes]:
    lines = [json.dumps({"header": document["header"]})] if "header" in document else []
    for section, value in document.items():
        if section != "header":
            for item in value if isinstance(value, list) else [value]:
                lines.append(json.dumps({section: item}, ensure_ascii=False))
    return [line.encode() for line in lines]


def _generated(records: int) -> list[bytes]:
    """A realistic feed from the benchmark's generator (declarations, then records)."""
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from generate_feed import lines
    finally:
        sys.path.remove(str(BENCHMARKS))
    return [json.dumps(line, separators=(",", ":")).encode() for line in lines(records)]


# Lines that take the slow paths of the line reader: every one must read as before.
ODD_LINES = [
    b"",
    b"   ",
    b'{"sites": {"id": "s-odd", "id": "dup"}}',
    b'{"sites":{"id":"s-compact","id":"dup"}}',
    b'{"sites":{"id":"s-twice","id":"s-twice"}}',
    b'{"sites": {"id": "s-\\u0031", "name": "escaped"}}',
    b'{"sites": {"id": "s-x",}}',
    b'{"sites": {"id": 1e999}}',
    b'{"sites": {"id": NaN}}',
    b"[1, 2]",
    b'{"a": 1, "b": 2}',
    b'{"gadgets": {"id": "g"}}',
    b"\xff\xfe not utf-8",
    b'{"sites": {"id": "s-cr"}}\r',
    b"[" * 2000 + b"]" * 2000,
    b'{"header": {"sqm_version": "0.1"}}',
    b'{"characteristics": {"id": "char-late", "product": "prod-1", "unit": "MMT", '
    b'"lower_spec_limit": 1.0, "upper_spec_limit": 1.5, "name": "late"}}',
]


def _feeds(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """Whole NDJSON inputs: examples and data cases, a generated feed, and that feed with odd
    lines, a BOM, a missing last line feed, a late or repeated declaration and records out
    of place."""
    for path in _documents():
        loaded = load_path(path)
        if loaded.ok and isinstance(loaded.document, dict):
            yield path.name, b"\n".join(_ndjson(loaded.document)) + b"\n"
    generated = _generated(60)
    yield "generated", b"\n".join(generated) + b"\n"
    rng = random.Random(7)
    mixed = list(generated)
    for odd in ODD_LINES:
        mixed.insert(rng.randrange(2, len(mixed)), odd)
    # A characteristic declared again, differently, after the records that use it began.
    first = next(line for line in generated if line.startswith(b'{"characteristics"'))
    again = json.loads(first)
    again["characteristics"]["product"] = "prod-7"
    again["characteristics"]["upper_spec_limit"] += 1.0
    mixed.insert(len(mixed) - 5, json.dumps(again).encode())
    yield "mixed", b"\n".join(mixed)  # no final line feed
    yield "bom", b"\xef\xbb\xbf" + b"\n".join(generated[:30]) + b"\n"
    yield "records-first", b"\n".join([generated[-1], *generated[:40]]) + b"\n"
    yield "empty", b""
    yield "blank", b"\n\n  \n"


def test_block_reader_splits_as_readline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loaders, "MAX_LINE_BYTES", 20)
    texts = [
        b"",
        b"\n",
        b"a\nbb\n\nccc",
        b"x" * 20 + b"\n" + b"y" * 21 + b"\n" + b"z" * 19,
        b"x" * 20 + b"\n" + b"y" * 21,
        b"q" * 60 + b"\n" + b"r\n" + b"s" * 45 + b"\nt\r\n",
        b"\n".join(bytes([65 + i % 26]) * (i * 7 % 43) for i in range(80)) + b"\n",
    ]
    for text in texts:
        expected = [
            (number, None if raw is None else raw.removesuffix(b"\n"))
            for number, raw in iter_lines(io.BytesIO(text))
        ]
        for size in (1, 3, 7, 20, 64, 4096):
            found = [
                (first + offset, line)
                for first, lines, _ in iter_line_blocks(io.BytesIO(text), size)
                for offset, line in enumerate(lines)
            ]
            assert found == expected, (text, size)


def test_parallel_batches_cover_the_lines_as_readline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(loaders, "MAX_LINE_BYTES", 20)
    monkeypatch.setattr(parallel, "BATCH_LINES", 4)
    texts = [
        b"a\nbb\n\nccc",
        b"x" * 20 + b"\n" + b"y" * 21 + b"\n" + b"z" * 19,
        b"q" * 60 + b"\n" + b"r\n" + b"s" * 45 + b"\nt\r\n" + b"u" * 21,
        b"\n".join(bytes([65 + i % 26]) * (i * 7 % 43) for i in range(80)) + b"\n",
    ]
    for text in texts:
        path = tmp_path / "lines.ndjson"
        path.write_bytes(text)
        expected = [
            (number, None if raw is None else raw.removesuffix(b"\n"))
            for number, raw in iter_lines(io.BytesIO(text))
        ]
        for size in (1, 3, 7, 20, 64):
            with path.open("rb") as stream:
                found: list[tuple[int, bytes | None]] = []
                for batch in parallel._batches(stream, 0, 1, size):
                    assert batch[3] <= 4
                    lines = [None] if batch[0] < 0 else parallel._lines(stream.fileno(), batch)
                    found += [(batch[2] + offset, line) for offset, line in enumerate(lines)]
            assert found == expected, (text, size)


def test_ndjson_checker_equals_the_part_by_part_checker(tmp_path: Path) -> None:
    for name, text in _feeds(tmp_path):
        for profile in ((), ("automotive",)):
            reference = check_parts(iter_ndjson(io.BytesIO(text), name), profile, NOW, None)
            fast = check_ndjson(io.BytesIO(text), name, profile, now=NOW)
            assert _rows(fast) == _rows(reference), (name, profile)


def test_parallel_equals_serial_when_workers_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(parallel, "BATCH_LINES", 7)
    monkeypatch.setattr(parallel, "RESTART_AFTER", 2)
    monkeypatch.setattr(parallel, "RESTART_AFTER_DECLARATIONS", 30)
    for name, text in _feeds(tmp_path):
        path = tmp_path / f"{name}.ndjson"
        path.write_bytes(text)
        for profile in ((), ("automotive",)):
            serial = _rows(iter_findings(path, profile, now=NOW))
            assert _rows(iter_findings(path, profile, now=NOW, jobs=2)) == serial, name


def test_a_characteristic_declared_again_after_the_workers_started(tmp_path: Path) -> None:
    generated = _generated(40)
    first = next(line for line in generated if line.startswith(b'{"characteristics"'))
    again = json.loads(first)
    again["characteristics"]["product"] = "prod-9"  # now another product's characteristic
    reference = b'"characteristic":"%s"' % again["characteristics"]["id"].encode()
    users = [line for line in generated if reference in line]
    assert users
    lines = [*generated, json.dumps(again).encode(), *users]
    path = tmp_path / "again.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    serial = _rows(iter_findings(path, now=NOW))
    assert "SQM-R005" in {row[0] for row in serial}
    assert _rows(iter_findings(path, now=NOW, jobs=2)) == serial


def _items() -> Iterator[tuple[str, Any]]:
    for path in _documents():
        loaded = load_path(path)
        if not loaded.ok or not isinstance(loaded.document, dict):
            continue
        for section, value in loaded.document.items():
            for item in value if isinstance(value, list) else [value]:
                yield section, item


@pytest.mark.parametrize("profile", sorted(profiles()))
def test_one_schema_per_line_decides_as_one_per_section(profile: str) -> None:
    line = _line_validator(profile)
    checked = 0
    for section, item in _items():
        part = _part(profile, section)
        if part is None:
            continue
        assert line.is_valid({section: item}) == part.fast.is_valid(item), section
        checked += 1
    assert checked > 100


def _kept_root_errors(profile: str, skeleton: dict[str, Any]) -> list[Any]:
    """The root errors StructureChecker.root keeps (those it does not leave to the items)."""
    kept = []
    for error in schema_validator(profile).iter_errors(skeleton):
        path = list(error.absolute_path)
        if len(path) > 1 or error.validator == "contains":
            continue
        if path and path[0] == HEADER and error.validator != "type":
            continue
        kept.append(error)
    return kept


@pytest.mark.parametrize("profile", sorted(profiles()))
def test_root_shape_passes_only_skeletons_the_whole_schema_keeps_nothing_of(profile: str) -> None:
    skeletons: list[dict[str, Any]] = []
    for path in _documents():
        loaded = load_path(path)
        if loaded.ok and isinstance(loaded.document, dict):
            document = loaded.document
            skeleton = {k: [] if isinstance(v, list) else v for k, v in document.items()}
            if isinstance(skeleton.get(HEADER), dict):
                skeleton[HEADER] = {}
            skeletons.append(skeleton)
    base = skeletons[0]
    skeletons += [
        {},
        {k: v for k, v in base.items() if k != HEADER},
        {**base, HEADER: []},
        {**base, HEADER: "header"},
        {**base, "sites": {}},
        {**base, "sites": None},
        {**base, "gadgets": []},
        {**base, "certification_records": []},
    ]
    for name in json_schema(profile)["properties"]:
        skeletons.append({**base, name: 7})
    for skeleton in skeletons:
        if _root_shape(profile).is_valid(skeleton):
            assert _kept_root_errors(profile, skeleton) == [], skeleton
        else:
            assert _kept_root_errors(profile, skeleton), skeleton


def test_check_digits_agree_with_stdnum() -> None:
    rng = random.Random(3)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij -é٣"
    codes = ["529900SQMKRAFTWERK41", "5299000J2N45DDNE4Y28", "4006381333931", "73513537"]
    codes += ["96385074", "0012345678905", "00012345600012", "4006381333932"]
    for code in list(codes):
        for index in range(len(code)):
            codes.append(code[:index] + rng.choice(alphabet) + code[index + 1 :])
    for _ in range(3000):
        codes.append("".join(rng.choice(alphabet) for _ in range(rng.choice((8, 12, 13, 14, 20)))))
        codes.append("".join(rng.choice("0123456789") for _ in range(rng.choice((8, 12, 13, 14)))))
    for code in codes:
        assert checkdigits.lei_is_valid(code) == lei.is_valid(code), code
        assert checkdigits.ean_is_valid(code) == ean.is_valid(code), code


def test_compact_set_and_maps_behave_as_python_ones() -> None:
    rng = random.Random(11)
    keys = [f"id-{rng.randrange(40_000)}" for _ in range(60_000)]  # many repeated
    digests, seen = DigestSet(), set()
    rows, row_of = DigestMap(), {}
    maxima, best = MaxMap(), {}
    for index, key in enumerate(keys):
        assert digests.add(key) == (key not in seen)
        seen.add(key)
        rows.set_hash(hash(key), index)
        row_of[key] = index
        value = rng.random()
        maxima.update(key, value, index)
        if key not in best or value > best[key][0]:
            best[key] = (value, index)
    assert len(digests) == len(seen) == len(rows) == len(maxima)
    for key in [*seen, "absent", "id-40000"]:
        assert (key in digests) == (key in seen)
        assert rows.get_hash(hash(key)) == row_of.get(key)
        assert maxima.get(key) == best.get(key)
    assert [] not in digests and None not in digests


def test_compact_set_costs_about_eight_bytes_a_key() -> None:
    digests = DigestSet()
    for index in range(200_000):
        digests.add(f"record-{index}")
    stored = sum(segment.buffer_info()[1] * 8 for segment in digests._segments)
    assert stored == 8 * 200_000
    allocated = sum(
        segment.__sizeof__() for segment in digests._segments
    )  # with each array's spare room
    assert allocated < 10 * 200_000


def test_characteristic_table_keeps_specs_as_a_dict_would() -> None:
    table, reference = CharacteristicTable(), {}
    rng = random.Random(5)
    for index in range(3000):
        identifier = f"char-{rng.randrange(1000)}"
        spec = CharacteristicSpec(
            rng.choice(["prod-1", "prod-2", None, f"prod-{index}"]),
            rng.choice(["MMT", "KGM", None]),
            rng.choice([None, -1.5, 0.0, float(index)]),
            rng.choice([None, 2.5, float(index) + 1.0]),
            rng.choice([None, "critical", "standard"]),
        )
        table[identifier] = spec
        reference[identifier] = spec
        probe = f"char-{rng.randrange(1200)}"
        assert table.get(probe) == reference.get(probe)
        assert (probe in table) == (probe in reference)
    assert len(table) == len(reference)
    for identifier, spec in reference.items():
        assert table.get(identifier) == spec


def test_observed_counts_beyond_64_bits_are_kept() -> None:
    from sqm.validator.layers.plausibility import _Observed

    observed = _Observed()
    rows = [(hash("a"), 3, 10, 0), (-5, 2**70, 2**64, 1), (7, 0, 1, 2**65)]
    for row in rows:
        observed.append(row)
    assert [tuple(r) for r in observed] == [(key & (2**64 - 1), *rest) for key, *rest in rows]


def test_workers_read_their_batches_from_the_file_itself(tmp_path: Path) -> None:
    # A stream that is not a file is checked on one core, with the same findings.
    text = b"\n".join(_generated(30)) + b"\n"
    path = tmp_path / "feed.ndjson"
    path.write_bytes(text)
    serial = _rows(iter_findings(path, now=NOW))
    streamed = _rows(parallel.iter_parallel_ndjson(io.BytesIO(text), str(path), now=NOW))
    assert streamed == serial
    with path.open("rb") as stream:
        stream.read(0)
        assert os.fstat(stream.fileno()).st_size == len(text)
        forked = _rows(parallel.iter_parallel_ndjson(stream, str(path), now=NOW))
    assert forked == serial


def test_country_codes_are_pycountrys() -> None:
    import itertools
    import string

    import pycountry

    from sqm.validator.layers.semantics import _assigned_country

    codes = ["".join(pair) for pair in itertools.product(string.ascii_uppercase, repeat=2)]
    codes += ["ÀB", "İS", "ǅA", "ΑΒ"]
    for code in codes:
        assert _assigned_country(code) == (pycountry.countries.get(alpha_2=code) is not None), code


def test_workers_restart_after_the_declarations(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    starts: list[int] = []
    original = parallel._Workers.__init__

    def counted(self: Any, *args: Any) -> None:
        starts.append(1)
        original(self, *args)

    monkeypatch.setattr(parallel._Workers, "__init__", counted)
    monkeypatch.setattr(parallel, "BATCH_LINES", 20)
    monkeypatch.setattr(parallel, "RESTART_AFTER_DECLARATIONS", 100)
    path = tmp_path / "feed.ndjson"
    path.write_bytes(b"\n".join(_generated(200)) + b"\n")
    serial = _rows(iter_findings(path, now=NOW))
    assert _rows(iter_findings(path, now=NOW, jobs=2)) == serial
    assert len(starts) == 2  # after the header, then after the declarations
