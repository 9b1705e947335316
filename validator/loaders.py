"""Reading feeds into parts for the checker, with problems of the bytes as syntax findings.

- JSON and YAML documents are read whole (limited to :data:`MAX_DOCUMENT_BYTES`), parsed
  strictly (no duplicate keys, no NaN), and their findings placed at line and column.
- NDJSON (``.ndjson``, ``.jsonl``) is streamed: the first line is ``{"header": {...}}``, every
  other line ``{"<section>": {...}}``; lines are limited to :data:`MAX_LINE_BYTES` and read in
  bounded chunks, so a 2 GB line costs no memory.
- A CSV feed folder is streamed row by row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import yaml

from sqm.schema import tabular
from sqm.schema.tabular import TabularError
from sqm.validator import rules
from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Finding

JSON_SUFFIXES = {".json"}
YAML_SUFFIXES = {".yaml", ".yml"}
NDJSON_SUFFIXES = {".ndjson", ".jsonl"}
RDF_SUFFIXES = {".ttl", ".jsonld"}
FEED_SUFFIXES = JSON_SUFFIXES | YAML_SUFFIXES | NDJSON_SUFFIXES | RDF_SUFFIXES
CSV_HINT = (
    "Fix the file, row and column named; columns must match the template "
    "(docs/reference/csv-template.md), numbers use a dot, files are UTF-8."
)
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
MAX_LINE_BYTES = 16 * 1024 * 1024
# A YAML document may share nodes through aliases; expanded, it may hold at most this many values.
MAX_YAML_NODES = 2_000_000
MERGE_TAG = "tag:yaml.org,2002:merge"
_CHUNK = 1024 * 1024


@dataclass
class Loaded:
    """A parsed document, or the syntax findings that prevented parsing."""

    source: str
    document: Any = None
    findings: list[Finding] = field(default_factory=list)
    text: str | None = None
    kind: str = "json"

    @property
    def ok(self) -> bool:
        return not self.findings


def syntax(
    code: str, message: str, source: str, line: int | None = None, column: int | None = None
) -> Finding:
    """A syntax finding, located in the input."""
    rule = rules.get(code)
    return Finding(code, rule.severity, message, "", rule.hint, None, None, line, column, source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys and keeps dates as text."""


def _construct_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            continue  # merged keys may be overridden: only the mapping's own keys must be unique
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, Hashable) and key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        seen.add(key)
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be text", mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Unquoted YAML dates would become date objects and fail the schema's string type: keep text.
_UniqueKeyLoader.add_constructor(
    "tag:yaml.org,2002:timestamp",
    lambda loader, node: loader.construct_scalar(node),  # type: ignore[arg-type]
)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; SQM values must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range; SQM values must be finite")
    return value


def _bounded_int(text: str) -> int:
    # As orjson (the NDJSON parser) does: integers beyond 64 bits are refused. By their digits
    # first: int() refuses thousands of them with advice about the interpreter's own settings.
    digits = len(text.lstrip("-"))
    if digits > 20 or abs(value := int(text)) >= 1 << 64:
        raise ValueError(
            f"integer {text[:20]}... ({digits} digits) is out of range: SQM numbers fit in 64 "
            "bits; carry a longer code as a string"
        )
    return value


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON refusing duplicate keys, NaN/Infinity, overflowing floats and integers beyond
    64 bits (raises ValueError or RecursionError)."""
    return json.loads(
        text,
        object_pairs_hook=_unique_pairs,
        parse_constant=_reject_constant,
        parse_float=_finite_float,
        parse_int=_bounded_int,
    )


def parse_json_text(text: str, source: str) -> Loaded:
    """Parse a JSON document strictly."""
    try:
        document = loads_strict(text)
    except json.JSONDecodeError as exc:
        finding = syntax("SQM-X001", f"invalid JSON: {exc.msg}", source, exc.lineno, exc.colno)
        return Loaded(source, findings=[finding])
    except ValueError as exc:
        return Loaded(source, findings=[syntax("SQM-X001", f"invalid JSON: {exc}", source)])
    except RecursionError:
        message = "invalid JSON: nested too deeply"
        return Loaded(source, findings=[syntax("SQM-X001", message, source)])
    return _check_object(Loaded(source, document, text=text, kind="json"))


def _expansion_problem(root: yaml.Node) -> tuple[str, yaml.Node] | None:
    """Why a composed YAML graph is unsafe to expand, if it is: aliases that refer to their own
    ancestors, or that multiply the document beyond :data:`MAX_YAML_NODES` (a "billion
    laughs"). Shared nodes are counted once per use, as expansion would."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _UnsafeAliasError("an alias refers to a mapping or list that contains it", node)
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_YAML_NODES:
                    break
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise _UnsafeAliasError(
                f"aliases expand the document beyond {MAX_YAML_NODES:,} values", node
            )
        sizes[key] = total
        return total

    try:
        size(root)
    except _UnsafeAliasError as exc:
        return exc.reason, exc.node
    return None


class _UnsafeAliasError(Exception):
    def __init__(self, reason: str, node: yaml.Node) -> None:
        super().__init__(reason)
        self.reason, self.node = reason, node


def _json_value(value: Any, at: str) -> Any:
    """YAML data as JSON would carry it; raises ValueError naming the first value JSON lacks."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{at or '/'}: mapping key {key!r} is not text")
            result[key] = _json_value(item, f"{at}/{key}")
        return result
    if isinstance(value, list):
        return [_json_value(item, f"{at}/{index}") for index, item in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) >= 1 << 64:
            raise ValueError(f"{at}: integer {str(value)[:20]}... is too large")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{at}: {value} is not a finite number")
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise ValueError(f"{at}: a {type(value).__name__} value has no JSON equivalent")


def parse_yaml_text(text: str, source: str) -> Loaded:
    """Parse a YAML document safely: no duplicate keys, merge keys honoured, dates kept as text,
    aliases bounded, and only values JSON can carry."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return _check_object(Loaded(source, None, text=text, kind="yaml"))
        unsafe = _expansion_problem(node)
        if unsafe is not None:
            reason, where = unsafe
            mark = where.start_mark
            finding = syntax(
                "SQM-X001", f"invalid YAML: {reason}", source, mark.line + 1, mark.column + 1
            )
            return Loaded(source, findings=[finding])
        document = _json_value(loader.construct_document(node), "")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = exc.problem or str(exc)
        finding = syntax("SQM-X001", f"invalid YAML: {problem}", source, line, column)
        return Loaded(source, findings=[finding])
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        return Loaded(source, findings=[syntax("SQM-X001", f"invalid YAML: {exc}", source)])
    finally:
        loader.dispose()
    return _check_object(Loaded(source, document, text=text, kind="yaml"))


def _check_object(loaded: Loaded) -> Loaded:
    if loaded.document is None:
        loaded.findings.append(syntax("SQM-X004", "the input holds no feed", loaded.source))
    elif not isinstance(loaded.document, dict):
        kind = type(loaded.document).__name__
        message = f"expected a feed object, found {kind}"
        loaded.findings.append(syntax("SQM-X002", message, loaded.source))
    return loaded


def decode(data: bytes, source: str) -> str | Loaded:
    """Bytes to text (UTF-8, BOM accepted), or the finding that says why not."""
    if not data.strip():
        return Loaded(source, findings=[syntax("SQM-X004", "the input is empty", source)])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        return Loaded(source, findings=[syntax("SQM-X003", message, source, line)])


def read_bounded(stream: IO[bytes], source: str, already: int = 0) -> bytes | Loaded:
    """Read the rest of a whole document (``already`` bytes of it were read), never more than
    the limit plus one byte."""
    data = stream.read(MAX_DOCUMENT_BYTES + 1 - already)
    if len(data) + already > MAX_DOCUMENT_BYTES:
        limit = MAX_DOCUMENT_BYTES // (1024 * 1024)
        message = f"the document exceeds {limit} MiB; publish it as NDJSON"
        return Loaded(source, findings=[syntax("SQM-X006", message, source)])
    return data


def load_text_document(data: bytes, source: str, suffix: str) -> Loaded:
    """Decode and parse a whole JSON or YAML document."""
    text = decode(data, source)
    if isinstance(text, Loaded):
        return text
    if suffix in YAML_SUFFIXES:
        return parse_yaml_text(text, source)
    if suffix in JSON_SUFFIXES or text.lstrip().startswith(("{", "[")):
        return parse_json_text(text, source)
    return parse_yaml_text(text, source)


def load_path(path: Path) -> Loaded:
    """Load a whole JSON or YAML file."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            data = read_bounded(handle, source)
    except OSError as exc:
        raise ValidatorError(f"{path}: cannot be read: {exc.strerror}") from exc
    if isinstance(data, Loaded):
        return data
    return load_text_document(data, source, path.suffix.lower())


# --- streaming ----------------------------------------------------------------------------------

Part = tuple[str, Any, dict[str, Any]]


class LineReader(Protocol):
    """What the NDJSON reader needs of a stream."""

    def readline(self, size: int = -1, /) -> bytes: ...


def iter_lines(stream: LineReader) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per line; bytes is None for a line over the limit (skipped)."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while True:  # discard the rest of the line in bounded chunks
                rest = stream.readline(_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line


def loads_line(raw: bytes) -> Any:
    """Parse one NDJSON line fast (orjson) yet as strictly as :func:`loads_strict`.

    orjson keeps the last of duplicate keys silently. Outside strings, a colon follows each key
    occurrence; inside strings colons survive re-serialisation unchanged unless written as a
    ``\\u`` escape. So, in a line without backslashes, equal colon counts in the line and in
    its re-serialisation prove that no key was dropped. Any other line is parsed again strictly,
    which also names the duplicate.
    """
    value = orjson.loads(raw)
    # A backslash-free line has no \\u escapes (memchr is ~10x cheaper than a 2-byte search).
    if b"\\" in raw or raw.count(b":") != orjson.dumps(value).count(b":"):
        return loads_strict(raw)
    return value


def parse_ndjson_line(
    number: int, raw: bytes | None, source: str
) -> tuple[str, Any] | Finding | None:
    """One NDJSON line as (section, value), a syntax finding, or None for a blank line."""
    if raw is None:
        limit = MAX_LINE_BYTES // (1024 * 1024)
        return syntax("SQM-X005", f"line {number} exceeds {limit} MiB", source, number)
    if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        return None
    try:
        value = loads_line(raw)
    except UnicodeDecodeError as exc:
        return syntax("SQM-X003", f"not UTF-8: {exc.reason}", source, number, exc.start + 1)
    except json.JSONDecodeError as exc:
        return syntax("SQM-X001", f"invalid JSON: {exc.msg}", source, number, exc.colno)
    except (ValueError, RecursionError) as exc:
        return syntax("SQM-X001", f"invalid JSON: {exc}", source, number)
    if not isinstance(value, dict) or len(value) != 1:
        message = "a line must be one object with one key: header or a section name"
        return syntax("SQM-X007", message, source, number)
    [(section, item)] = value.items()
    return section, item


def iter_ndjson(stream: LineReader, source: str) -> Iterator[Part | Finding]:
    """Parts of an NDJSON feed, or syntax findings for the lines that cannot be parts."""
    yield from iter_ndjson_lines(iter_lines(stream), source)


def iter_ndjson_lines(
    lines: Iterable[tuple[int, bytes | None]], source: str
) -> Iterator[Part | Finding]:
    """Parts of an NDJSON feed from its numbered lines (see :func:`iter_lines`)."""
    header_seen = warned = False
    for number, raw in lines:
        parsed = parse_ndjson_line(number, raw, source)
        if parsed is None or isinstance(parsed, Finding):
            if parsed is not None:
                yield parsed
            continue
        section, item = parsed
        if section == "header":
            if header_seen:
                yield syntax("SQM-X007", "a second header line", source, number)
                continue
            header_seen = True
        elif not header_seen and not warned:
            yield syntax("SQM-X007", "the first line must be the header", source, number)
            warned = True  # report once; check the records anyway
        yield section, item, {"line": number, "source": source}
    if not header_seen and not warned:
        yield syntax("SQM-X004", "the input holds no feed", source)


def iter_csv(folder: Path) -> Iterator[Part | Finding]:
    """Parts of a CSV feed folder, row by row. A file that cannot be read is reported and
    skipped; the other files are still checked."""
    source = str(folder)
    layout = tabular.sections()
    if not (folder / tabular.HEADER_FILE).is_file():
        message = f"{tabular.HEADER_FILE}: missing: a CSV feed needs the header row"
        yield replace(syntax("SQM-X001", message, source), hint=CSV_HINT)
        return
    known = {tabular.section_file(s) for s in layout}
    for path in sorted(folder.glob("*.csv")):
        if path.name not in known:
            message = f"{path.name}: is not a section of the template ({', '.join(sorted(known))})"
            yield replace(syntax("SQM-X001", message, f"{source}/{path.name}"), hint=CSV_HINT)
    for section in layout:
        file = tabular.section_file(section)
        path = folder / file
        if not path.is_file():
            continue
        try:
            rows = list(tabular.read_section(path, section)) if section == "header" else None
            if rows is not None and len(rows) != 1:
                message = f"{file}: must hold exactly one data row, found {len(rows)}"
                yield replace(syntax("SQM-X001", message, f"{source}/{file}"), hint=CSV_HINT)
                continue
            for row, item in rows if rows is not None else tabular.read_section(path, section):
                yield section, item, {"line": row, "source": f"{source}/{file}"}
        except TabularError as exc:
            finding = syntax("SQM-X001", str(exc), f"{source}/{exc.file}", exc.row)
            yield replace(finding, hint=CSV_HINT)


def is_csv_feed(path: Path) -> bool:
    """A folder holding a CSV feed (it has the header file)."""
    return path.is_dir() and (path / tabular.HEADER_FILE).is_file()


def expand_inputs(path: Path) -> list[Path]:
    """The feeds a path names: a file, a CSV feed folder, or every feed in a plain folder."""
    if not path.is_dir() or is_csv_feed(path):
        return [path]
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if (child.is_file() and child.suffix.lower() in FEED_SUFFIXES) or is_csv_feed(child):
            found.append(child)
    if not found:
        raise ValidatorError(f"{path}: no feeds (JSON, YAML or CSV feed folders) in this folder")
    return found
