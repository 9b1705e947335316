"""Reading feeds from files and streams into documents, with syntax problems as findings.

JSON and YAML are parsed whole here; NDJSON and the other streamed formats have their own
readers. Each loader returns a :class:`Loaded`: the document, or the syntax findings that
stopped it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sqm.schema import SchemaError
from sqm.schema.tabular import TabularError, read_csv_feed
from sqm.validator import rules
from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Finding

JSON_SUFFIXES = {".json", ".jsonld"}
YAML_SUFFIXES = {".yaml", ".yml"}


@dataclass
class Loaded:
    """A parsed document, or the syntax findings that prevented parsing."""

    source: str
    document: Any = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _syntax(
    code: str, message: str, source: str, line: int | None = None, column: int | None = None
) -> Finding:
    rule = rules.get(code)
    return Finding(code, rule.severity, message, "", rule.hint, None, None, line, column, source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys and keeps dates as text."""


def _construct_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Unquoted YAML dates would become date objects and fail the schema's string type: keep text.
_UniqueKeyLoader.add_constructor(
    "tag:yaml.org,2002:timestamp",
    lambda loader, node: loader.construct_scalar(node),  # type: ignore[arg-type]
)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; SQM values must be finite")


def parse_json_text(text: str, source: str) -> Loaded:
    """Parse JSON text strictly: no duplicate keys, no NaN or Infinity."""
    try:
        document = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        return Loaded(
            source,
            findings=[
                _syntax("SQM-X001", f"invalid JSON: {exc.msg}", source, exc.lineno, exc.colno)
            ],
        )
    except ValueError as exc:
        return Loaded(source, findings=[_syntax("SQM-X001", f"invalid JSON: {exc}", source)])
    except RecursionError:
        return Loaded(
            source, findings=[_syntax("SQM-X001", "invalid JSON: nested too deeply", source)]
        )
    return _check_object(Loaded(source, document))


def parse_yaml_text(text: str, source: str) -> Loaded:
    """Parse YAML text safely: no duplicate keys, dates kept as text."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = exc.problem or str(exc)
        return Loaded(
            source, findings=[_syntax("SQM-X001", f"invalid YAML: {problem}", source, line, column)]
        )
    except (yaml.YAMLError, RecursionError) as exc:
        return Loaded(source, findings=[_syntax("SQM-X001", f"invalid YAML: {exc}", source)])
    return _check_object(Loaded(source, document))


def _check_object(loaded: Loaded) -> Loaded:
    if loaded.document is None:
        loaded.findings.append(_syntax("SQM-X004", "the input holds no feed", loaded.source))
    elif not isinstance(loaded.document, dict):
        kind = type(loaded.document).__name__
        loaded.findings.append(
            _syntax("SQM-X002", f"expected a feed object, found {kind}", loaded.source)
        )
    return loaded


def decode(data: bytes, source: str) -> str | Loaded:
    """Bytes to text (UTF-8, BOM accepted), or the finding that says why not."""
    if not data.strip():
        return Loaded(source, findings=[_syntax("SQM-X004", "the input is empty", source)])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return Loaded(
            source,
            findings=[
                _syntax(
                    "SQM-X003",
                    f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
                    source,
                    line,
                )
            ],
        )


def load_path(path: Path) -> Loaded:
    """Load a JSON or YAML file, or a CSV feed folder."""
    source = str(path)
    if path.is_dir():
        try:
            return Loaded(source, read_csv_feed(path))
        except TabularError as exc:
            return Loaded(
                source, findings=[_syntax("SQM-X001", str(exc), source + "/" + exc.file, exc.row)]
            )
        except SchemaError as exc:
            raise ValidatorError(str(exc)) from exc
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidatorError(f"{path}: cannot be read: {exc.strerror}") from exc
    text = decode(data, source)
    if isinstance(text, Loaded):
        return text
    if path.suffix.lower() in YAML_SUFFIXES:
        return parse_yaml_text(text, source)
    if path.suffix.lower() in JSON_SUFFIXES or text.lstrip().startswith(("{", "[")):
        return parse_json_text(text, source)
    return parse_yaml_text(text, source)


FEED_SUFFIXES = JSON_SUFFIXES | YAML_SUFFIXES


def is_csv_feed(path: Path) -> bool:
    """A folder holding a CSV feed (it has the header file)."""
    return path.is_dir() and (path / "feed.csv").is_file()


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
