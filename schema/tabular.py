"""The CSV template for small suppliers: its column layout, and reading a CSV feed into a feed.

A feed in CSV is a folder of files, one per section of the feed: ``feed.csv`` holds the header
(one row), and ``sites.csv``, ``capability_records.csv`` and so on hold one item per row. Nested
objects flatten into dotted column names (``period.start``, ``assurance.level``); lists of values
are written in one cell separated by ``|``; lists of objects get numbered columns
(``identifiers.1.scheme``, ``identifiers.2.scheme``) up to :data:`REPEATS`. An empty cell means
absent. The layout is derived from the generated JSON Schema, so it follows the standard.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqm.schema.artifacts import CORE_PROFILE, json_schema
from sqm.schema.errors import SchemaError

HEADER_FILE = "feed.csv"
HEADER_SECTION = "header"
LIST_SEPARATOR = "|"
# How many numbered column groups a list of objects gets (identifiers.1 .. identifiers.N):
# enough for a small supplier's typical feed; longer lists belong in JSON or YAML.
REPEATS = 2
REPEATS_BY_SLOT = {
    "classifications": 3,
    "defect_categories": 6,
    "lots": 4,
    "covered_sites": 4,
    "upstream_suppliers": 3,
}
# Nesting beyond this depth is left to JSON: a spreadsheet with such columns helps nobody.
MAX_DEPTH = 4


class TabularError(SchemaError):
    """A CSV feed that cannot be read: the file, row and column say where."""

    def __init__(
        self, message: str, *, file: str, row: int | None = None, column: str | None = None
    ):
        self.file = file
        self.row = row
        self.column = column
        where = file + (f", line {row}" if row is not None else "")
        where += f", column {column!r}" if column else ""
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Column:
    """One column of a section: its dotted path and what a cell must hold."""

    path: tuple[str | int, ...]
    kind: str  # string, number, integer, boolean, enum, list
    required: bool
    description: str
    choices: tuple[str, ...] = ()
    item_kind: str = "string"

    @property
    def name(self) -> str:
        return ".".join(str(p) for p in self.path)


def repeats(slot: str) -> int:
    """How many numbered column groups the list of objects ``slot`` gets."""
    return REPEATS_BY_SLOT.get(slot, REPEATS)


def _deref(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    return _deref(schema, schema["$defs"][ref.rsplit("/", 1)[1]])


def _non_null(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """Strip LinkML's ``anyOf: [X, {type: null}]`` wrapper for optional slots."""
    options = node.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            merged = {k: v for k, v in node.items() if k != "anyOf"}
            merged.update(rest[0])
            return merged
    return node


def _scalar_kind(node: Mapping[str, Any]) -> str:
    types = node.get("type", "string")
    if isinstance(types, list):
        types = next((t for t in types if t != "null"), "string")
    return str(types)


def _columns(
    schema: Mapping[str, Any],
    definition: Mapping[str, Any],
    prefix: tuple[str | int, ...],
    required_parent: bool,
    depth: int,
) -> Iterator[Column]:
    required = set(definition.get("required", ()))
    for prop, raw in definition.get("properties", {}).items():
        node = _non_null(raw)
        description = str(raw.get("description", node.get("description", "")))
        is_required = required_parent and prop in required
        target = _deref(schema, node)
        path = (*prefix, prop)
        if _scalar_kind(node) == "array" or "items" in node:
            item = _deref(schema, _non_null(node.get("items", {})))
            if item.get("type") == "object":
                if depth >= MAX_DEPTH:
                    continue
                for index in range(1, repeats(prop) + 1):
                    yield from _columns(
                        schema, item, (*path, index), is_required and index == 1, depth + 1
                    )
            else:
                yield Column(
                    path,
                    "list",
                    is_required,
                    description,
                    tuple(item.get("enum", ())),
                    _scalar_kind(item),
                )
        elif target.get("type") == "object":
            if depth < MAX_DEPTH:
                yield from _columns(schema, target, path, is_required, depth + 1)
        elif "enum" in target:
            yield Column(path, "enum", is_required, description, tuple(target["enum"]))
        elif "const" in node:
            yield Column(path, "enum", is_required, description, (str(node["const"]),))
        else:
            yield Column(path, _scalar_kind(target), is_required, description)


def _ordered(columns: Iterator[Column]) -> list[Column]:
    """The id first, then required columns, then the rest; each group in schema order."""
    listed = list(columns)
    return sorted(listed, key=lambda c: (c.name != "id", not c.required, listed.index(c)))


def sections(profile: str = CORE_PROFILE) -> dict[str, list[Column]]:
    """The template's sections (file stem to columns), header first, in schema order."""
    schema = json_schema(profile)
    result: dict[str, list[Column]] = {}
    for prop, raw in schema["properties"].items():
        node = _non_null(raw)
        if prop == HEADER_SECTION:
            result[HEADER_SECTION] = _ordered(_columns(schema, _deref(schema, node), (), True, 1))
        elif "items" in node:
            item = _deref(schema, _non_null(node["items"]))
            result[prop] = _ordered(_columns(schema, item, (), True, 1))
    ordered = {HEADER_SECTION: result.pop(HEADER_SECTION)}
    ordered.update(result)
    return ordered


def section_file(section: str) -> str:
    """The CSV file name of a section."""
    return HEADER_FILE if section == HEADER_SECTION else f"{section}.csv"


def _convert(column: Column, text: str, file: str, row: int) -> Any:
    def fail(expected: str) -> TabularError:
        return TabularError(
            f"expected {expected}, got {text!r}", file=file, row=row, column=column.name
        )

    kind = column.item_kind if column.kind == "list" else column.kind
    if column.kind == "list":
        return [_convert_one(kind, part.strip(), fail) for part in text.split(LIST_SEPARATOR)]
    return _convert_one(kind, text, fail)


def _convert_one(kind: str, text: str, fail: Any) -> Any:
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise fail("a whole number") from None
    if kind == "number":
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise fail("a number with a dot as decimal separator") from None
        if not number.is_finite() or abs(number.adjusted()) > 308:
            raise fail("a finite number within the range of a double (about 1e308)")
        return (
            int(number)
            if number == number.to_integral_value() and "." not in text
            else float(number)
        )
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise fail("true or false")
    return text


def _assign(target: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    # Numbered groups become {"1": {...}, "2": {...}} here and lists in _listify.
    node: Any = target
    for step in path[:-1]:
        node = node.setdefault(str(step), {})
    node[str(path[-1])] = value


def _listify(node: Any) -> Any:
    """Turn the numbered groups ``{"1": {...}, "2": {...}}`` into lists, in number order."""
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def _read_rows(path: Path, columns: list[Column]) -> Iterator[tuple[int, dict[str, Any]]]:
    by_name = {c.name: c for c in columns}
    file = path.name
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise TabularError(f"cannot be read: {exc.strerror}", file=file) from exc

    def decoded() -> Iterator[str]:
        # Decoded line by line, so a bad byte is reported on the line that holds it.
        for number, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise TabularError(
                    f"is not UTF-8: byte 0x{raw[exc.start]:02x} in column {exc.start + 1}",
                    file=file,
                    row=number,
                ) from None

    with handle:
        reader = csv.reader(decoded())
        try:
            header = next(reader)
        except StopIteration:
            raise TabularError("is empty; the first row must name the columns", file=file) from None
        except csv.Error as exc:
            raise TabularError(f"is not CSV: {exc}", file=file, row=1) from exc
        unknown = [name for name in header if name.strip() and name.strip() not in by_name]
        if unknown:
            guesses = []
            for name in unknown:
                close = difflib.get_close_matches(name.strip(), list(by_name), n=1, cutoff=0.6)
                guesses.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TabularError(
                f"unknown column(s) {', '.join(guesses)}; the columns of this file are listed "
                "in docs/reference/csv-template.md",
                file=file,
                row=1,
            )
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise TabularError("column appears twice", file=file, row=1, column=name)
            seen.add(name)
        while True:
            # A quoted cell may span lines: a record is located at the line it starts on.
            row_number = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise TabularError(f"is not CSV: {exc}", file=file, row=row_number) from exc
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                raise TabularError(
                    f"has {len(row)} cells but the header names {len(header)} columns",
                    file=file,
                    row=row_number,
                )
            item: dict[str, Any] = {}
            for name, cell in zip(header, row, strict=False):
                text = cell.strip()
                if text and name.strip():
                    column = by_name[name.strip()]
                    _assign(item, column.path, _convert(column, text, file, row_number))
            yield row_number, _listify(item)


def read_section(
    path: Path, section: str, profile: str = CORE_PROFILE
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream the rows of one section file as (row number, item)."""
    yield from _read_rows(path, sections(profile)[section])


def iter_csv_feed(
    folder: Path, profile: str = CORE_PROFILE
) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Stream a CSV feed folder: (section, item, row number), the header first.

    One row is in memory at a time; :class:`TabularError` says which file, row and column
    cannot be read.
    """
    layout = sections(profile)
    header_path = folder / HEADER_FILE
    if not header_path.is_file():
        raise TabularError(
            f"missing: a CSV feed needs {HEADER_FILE} with the header row", file=HEADER_FILE
        )
    known = {section_file(s) for s in layout}
    for path in sorted(folder.glob("*.csv")):
        if path.name not in known:
            raise TabularError(
                f"is not a section of the template; expected one of {', '.join(sorted(known))}",
                file=path.name,
            )
    header_rows = list(_read_rows(header_path, layout[HEADER_SECTION]))
    if len(header_rows) != 1:
        raise TabularError(
            f"must hold exactly one data row, found {len(header_rows)}", file=HEADER_FILE
        )
    row, header = header_rows[0]
    yield HEADER_SECTION, header, row
    for section, columns in layout.items():
        path = folder / section_file(section)
        if section == HEADER_SECTION or not path.is_file():
            continue
        for row, item in _read_rows(path, columns):
            yield section, item, row


def read_csv_feed(folder: Path, profile: str = CORE_PROFILE) -> dict[str, Any]:
    """Read a CSV feed folder into a feed document (a dict shaped like the JSON form)."""
    feed: dict[str, Any] = {}
    for section, item, _row in iter_csv_feed(folder, profile):
        if section == HEADER_SECTION:
            feed[HEADER_SECTION] = item
        else:
            feed.setdefault(section, []).append(item)
    return feed


def template_files(profile: str = CORE_PROFILE) -> dict[str, str]:
    """The empty template: file name to its CSV text (the header row only)."""
    files: dict[str, str] = {}
    for section, columns in sections(profile).items():
        files[section_file(section)] = ",".join(c.name for c in columns) + "\n"
    return files


def template_reference(profile: str = CORE_PROFILE) -> str:
    """The column layout as a Markdown page for the docs."""
    lines = [
        "# CSV template reference",
        "",
        "<!-- Generated by `sqm schema generate` from the JSON Schema; do not edit. -->",
        "",
        "A feed in CSV is a folder: `feed.csv` holds the header in one row; every other file holds",
        "one item per row. Empty cells mean absent. Lists of values go in one cell separated by",
        f"`{LIST_SEPARATOR}`; lists of objects get numbered columns (`identifiers.1.scheme`,",
        f"`identifiers.2.scheme`: {REPEATS} groups; more for {', '.join(REPEATS_BY_SLOT)}).",
        "Numbers use a dot as decimal separator; booleans are `true` or `false`. Files you do not",
        "need can be left out; the blank templates are in",
        "`schema/generated/csv-template/`.",
        "",
    ]
    for section, columns in sections(profile).items():
        lines += [f"## `{section_file(section)}`", "", "| column | type | required | description |"]
        lines.append("|---|---|---|---|")
        for column in columns:
            kind = column.kind
            if column.choices:
                kind += ": " + ", ".join(f"`{c}`" for c in column.choices)
            elif column.kind == "list":
                kind += f" of {column.item_kind}"
            description = column.description.replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| `{column.name}` | {kind} | {'yes' if column.required else ''} | {description} |"
            )
        lines.append("")
    return "\n".join(lines)


def _format_cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, list):
        return LIST_SEPARATOR.join(_format_cell(v) for v in value)
    return str(value)


def _flatten(
    item: Mapping[str, Any], prefix: tuple[str | int, ...], out: dict[str, str], section: str
) -> None:
    for key, value in item.items():
        path = (*prefix, key)
        if isinstance(value, Mapping):
            _flatten(value, path, out, section)
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            if len(value) > repeats(key):
                name = ".".join(str(p) for p in path)
                raise TabularError(
                    f"{name} has {len(value)} entries; the CSV template holds at most "
                    f"{repeats(key)}: "
                    "publish this feed as JSON or YAML",
                    file=section_file(section),
                )
            for index, element in enumerate(value, start=1):
                _flatten(element, (*path, index), out, section)
        elif value is not None:
            out[".".join(str(p) for p in path)] = _format_cell(value)


def write_csv_feed(feed: Mapping[str, Any], profile: str = CORE_PROFILE) -> dict[str, str]:
    """A feed document as CSV files (file name to text), in the template's layout.

    Only the sections the feed has are written, and only the columns they use, in template
    order. Raises :class:`TabularError` when the feed needs more than the template can hold.
    """
    files: dict[str, str] = {}
    for section, columns in sections(profile).items():
        if section not in feed:
            continue
        value = feed[section]
        items = [value] if section == HEADER_SECTION else value
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            kind = "an object" if section == HEADER_SECTION else "a list of objects"
            raise TabularError(
                f"{section} must be {kind}; validate the feed first", file=section_file(section)
            )
        rows = []
        for item in items:
            row: dict[str, str] = {}
            _flatten(item, (), row, section)
            rows.append(row)
        known = [c.name for c in columns]
        used = {name for row in rows for name in row}
        unknown = sorted(used - set(known))
        if unknown:
            raise TabularError(
                f"{', '.join(unknown)} have no column in the template", file=section_file(section)
            )
        header = [name for name in known if name in used]
        lines = [",".join(header)]
        for row in rows:
            lines.append(",".join(_csv_quote(row.get(name, "")) for name in header))
        files[section_file(section)] = "\n".join(lines) + "\n"
    return files


def _csv_quote(text: str) -> str:
    if any(ch in text for ch in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text
