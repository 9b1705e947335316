"""Layer 2, structure: the generated JSON Schema of the core and of every declared profile.

Items are checked one at a time against their section's definition, so that a feed can be
streamed: jsonschema-rs decides validity fast, and only an invalid item is run through the
reference ``jsonschema`` validator, whose errors become findings. Both engines must agree on
every verdict (the tests prove it on every example). Root-level constraints (required
sections, unknown sections, a profile's "must contain") are checked once at the end.

Each JSON Schema error becomes one finding with a stable code (SQM-S001..S011), the JSON
Pointer of the offending value and, where the schema has one, the field's description as hint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import jsonschema_rs

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

from sqm.schema import CORE_PROFILE, json_schema
from sqm.validator import rules
from sqm.validator.findings import Finding, pointer

_KEYWORD_CODES = {
    "required": "SQM-S001",
    "additionalProperties": "SQM-S002",
    "type": "SQM-S003",
    "enum": "SQM-S004",
    "const": "SQM-S004",
    "pattern": "SQM-S005",
    "minimum": "SQM-S006",
    "maximum": "SQM-S006",
    "exclusiveMinimum": "SQM-S006",
    "exclusiveMaximum": "SQM-S006",
    "format": "SQM-S007",
    "contains": "SQM-S010",
    "minItems": "SQM-S011",
    "maxItems": "SQM-S011",
}
_MAX_VALUE_CHARS = 200
HEADER = "header"


def _reference(schema: dict[str, Any]) -> Draft202012Validator:
    # Imported on first use: the reference engine only explains items that are invalid.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def schema_validator(profile: str = CORE_PROFILE) -> Draft202012Validator:
    """The compiled reference validator of a whole feed, for the core or a profile."""
    return _reference(json_schema(profile))


@cache
def _root_shape(profile: str) -> Any:
    """A small compiled schema of what :meth:`StructureChecker.root` reports: the top-level
    keys allowed and required and each section's own keywords (its items are checked one by
    one, its "contains" item by item), the header only as to its type (its content is checked
    on its own). When a feed's skeleton passes it, the whole schema reports nothing that
    ``root`` keeps; only then is the reference validator of the whole feed spared."""
    root = json_schema(profile)
    properties: dict[str, Any] = {}
    for name, prop in root["properties"].items():
        if "$ref" in prop:  # a section shaped by a definition: type errors are what is kept
            target = root["$defs"][str(prop["$ref"]).rsplit("/", 1)[-1]]
            properties[name] = {"type": target["type"]} if "type" in target else {}
            if name != HEADER:
                return _compile_fast(root)  # not the shape of this standard: the whole schema
        else:
            properties[name] = {k: v for k, v in prop.items() if k not in ("items", "contains")}
    shape = {k: v for k, v in root.items() if k not in ("$defs", "properties", "$id")}
    if "$ref" in json.dumps([shape, properties]):
        return _compile_fast(root)  # a root keyword needs the definitions: the whole schema
    return _compile_fast({**shape, "properties": properties})


def _compile_fast(schema: dict[str, Any]) -> Any:
    return jsonschema_rs.validator_for(schema, validate_formats=True)


@cache
def _line_validator(profile: str) -> Any:
    """One compiled schema for a line of an NDJSON feed, ``{section: item}`` (or
    ``{"header": header}``): the item is checked against its section's definition, exactly as
    ``_part(profile, section).fast`` checks it (``tests/validator/test_fast_paths.py``), with
    one compiled copy of the definitions instead of one per section."""
    root = json_schema(profile)
    properties = {
        name: prop if name == HEADER else prop.get("items", {})
        for name, prop in root["properties"].items()
    }
    return _compile_fast(
        {
            "$schema": root["$schema"],
            "$defs": root["$defs"],
            "type": "object",
            "properties": properties,
        }
    )


class _Part:
    """One definition a part of a feed is checked against: jsonschema-rs decides, the
    reference validator explains (each compiled on first need)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._fast: Any = None
        self._reference: Draft202012Validator | None = None

    @property
    def fast(self) -> Any:
        if self._fast is None:
            self._fast = _compile_fast(self.schema)
        return self._fast

    @property
    def reference(self) -> Draft202012Validator:
        if self._reference is None:
            self._reference = _reference(self.schema)
        return self._reference


def _compile(schema: dict[str, Any]) -> _Part:
    return _Part(schema)


@cache
def _part(profile: str, section: str) -> _Part | None:
    """The compiled schema of one item of ``section`` (or of the header), or None if unknown."""
    root = json_schema(profile)
    prop = root["properties"].get(section)
    if prop is None:
        return None
    node = prop if section == HEADER else prop.get("items", {})
    return _compile({"$schema": root["$schema"], "$defs": root["$defs"], **node})


@cache
def _organization() -> _Part:
    root = json_schema(CORE_PROFILE)
    return _compile(
        {"$schema": root["$schema"], "$defs": root["$defs"], "$ref": "#/$defs/Organization"}
    )


def organization_findings(organization: Any, prefix: Sequence[Any] = ()) -> list[Finding]:
    """Findings for an organisation on its own, against the core schema's Organization (as a
    registry checks an identity it registers), placed under ``prefix``."""
    part = _organization()
    if part.fast.is_valid(organization):
        return []
    found: list[Finding] = []
    for error in part.reference.iter_errors(organization):
        found.extend(_findings(error, part.schema, set(), list(prefix)))
    return found


@cache
def _contains(profile: str) -> dict[str, _Part]:
    """Sections whose list a profile requires to contain a matching item."""
    root = json_schema(profile)
    return {
        name: _compile({"$schema": root["$schema"], "$defs": root["$defs"], **prop["contains"]})
        for name, prop in root["properties"].items()
        if "contains" in prop
    }


def sections_of(profile: str = CORE_PROFILE) -> list[str]:
    """The feed's list sections in schema order (everything but the header)."""
    return [name for name in json_schema(profile)["properties"] if name != HEADER]


class StructureChecker:
    """Checks a feed part by part against the core and each profile."""

    def __init__(self, profiles: Sequence[str] = ()) -> None:
        self.profiles = [CORE_PROFILE, *[p for p in profiles if p != CORE_PROFILE]]
        self.sections = set(sections_of())
        self._contained: set[tuple[str, str]] = set()
        # Resolved once: the per-item path runs for every record of a large feed.
        self._valid = [(n, _line_validator(n).is_valid) for n in self.profiles]
        self._containers: dict[str, list[tuple[str, _Part]]] = {}
        for section in [HEADER, *self.sections]:
            self._containers[section] = [
                (n, _contains(n)[section]) for n in self.profiles if section in _contains(n)
            ]

    def _check(self, section: str, value: Any, prefix: list[Any]) -> list[Finding]:
        line = {section: value}
        valid = self._valid
        if len(valid) == 1:  # the usual case, decided without building a list
            if valid[0][1](line):
                return []
            failed = [valid[0][0]]
        else:
            failed = [profile for profile, is_valid in valid if not is_valid(line)]
        parts = [part for part in (_part(profile, section) for profile in failed) if part]
        if not parts:
            return []
        found: list[Finding] = []
        seen: set[tuple[str, str, str]] = set()
        for part in parts:
            for error in part.reference.iter_errors(value):
                for finding in _findings(error, part.schema, self.sections, prefix):
                    key = (finding.code, finding.pointer, finding.message)
                    if key not in seen:
                        seen.add(key)
                        found.append(finding)
        return found

    def header(self, header: Any) -> list[Finding]:
        """Findings for the header."""
        return self._check(HEADER, header, [HEADER])

    def item(
        self, section: str, index: int | str, item: Any
    ) -> tuple[list[Finding], tuple[tuple[str, str], ...]]:
        """Findings for one item of a list section, and the (profile, section) pairs whose
        "must contain" requirement this item meets (for :meth:`meet`)."""
        valid = self._valid
        if len(valid) == 1 and valid[0][1]({section: item}):
            found: list[Finding] = []  # the usual case, without building the prefix
        else:
            found = self._check(section, item, [section, index])
        containers = self._containers.get(section)
        if not containers:
            return found, ()
        meets = tuple(
            (profile, section)
            for profile, part in containers
            if (profile, section) not in self._contained and part.fast.is_valid(item)
        )
        return found, meets

    def meet(self, requirements: tuple[tuple[str, str], ...]) -> None:
        """Record "must contain" requirements that an item met."""
        self._contained.update(requirements)

    def root(self, skeleton: Mapping[str, Any]) -> Iterator[Finding]:
        """Root-level findings: sections that are required, unknown or of the wrong type, and
        lists a profile requires to contain an item that none of the checked items matched.

        ``skeleton`` is the feed with every list emptied (its items were checked one by one).
        """
        seen: set[tuple[str, str, str]] = set()
        for profile in self.profiles:
            if _root_shape(profile).is_valid(skeleton):
                errors: Iterable[ValidationError] = ()
            else:
                errors = schema_validator(profile).iter_errors(skeleton)
            for error in errors:
                path = list(error.absolute_path)
                if len(path) > 1 or error.validator == "contains":
                    continue
                if path and path[0] == HEADER and error.validator != "type":
                    continue  # the header was checked on its own
                for finding in _findings(error, json_schema(profile), self.sections, []):
                    key = (finding.code, finding.pointer, finding.message)
                    if key not in seen:
                        seen.add(key)
                        yield finding
            for section, part in _contains(profile).items():
                if (profile, section) in self._contained:
                    continue
                target = str(part.schema.get("$ref", "")).rsplit("/", 1)[-1]
                yield rules.emit(
                    "SQM-S010",
                    f"{section}: must contain at least one {target}",
                    f"/{section}",
                )


def _is_nullable_wrapper(error: ValidationError) -> bool:
    options = error.validator_value if isinstance(error.validator_value, list) else []
    return error.validator == "anyOf" and any(o.get("type") == "null" for o in options)


def _alternatives(error: ValidationError) -> list[str] | None:
    """For LinkML's class-level ``any_of`` (each branch requires one field): those fields."""
    options = error.validator_value if isinstance(error.validator_value, list) else []
    names = []
    for option in options:
        required = option.get("required") if isinstance(option, Mapping) else None
        if not required or len(required) != 1:
            return None
        names.append(str(required[0]))
    return names or None


def _if_node(root: Mapping[str, Any], error: ValidationError) -> Mapping[str, Any] | None:
    """The schema node holding the ``if`` whose ``then`` the error comes from, if any."""
    path = list(error.absolute_schema_path)
    if "then" not in path:
        return None
    cut = len(path) - 1 - path[::-1].index("then")
    node: Any = root
    for step in path[:cut]:
        # The schema path does not record $ref hops; follow them where the step is not local.
        while isinstance(node, Mapping) and step not in node and "$ref" in node:
            node = root["$defs"][str(node["$ref"]).rsplit("/", 1)[-1]]
        node = node[step]
    return node if isinstance(node, Mapping) else None


def _condition(root: Mapping[str, Any], error: ValidationError) -> str | None:
    """Describe the ``if`` whose ``then`` failed: "when scheme is LEI"."""
    node = _if_node(root, error)
    if node is None:
        return None
    parts = []
    for field, spec in node.get("if", {}).get("properties", {}).items():
        if "const" in spec:
            parts.append(f"{field} is {spec['const']}")
        elif "anyOf" in spec:
            values = [str(o.get("const")) for o in spec["anyOf"] if "const" in o]
            parts.append(f"{field} is {' or '.join(values)}")
        else:
            parts.append(f"{field} is given")
    return "when " + " and ".join(parts) if parts else None


def _value(instance: Any) -> Any:
    if isinstance(instance, dict | list):
        return None
    if isinstance(instance, str) and len(instance) > _MAX_VALUE_CHARS:
        return instance[:_MAX_VALUE_CHARS] + "..."
    return instance


def _description(schema: Any, field: str) -> str:
    if isinstance(schema, Mapping):
        prop = schema.get("properties", {}).get(field, {})
        if isinstance(prop, Mapping):
            return str(prop.get("description", ""))
    return ""


def _record(parts: Sequence[Any], sections: set[str]) -> int | None:
    if len(parts) >= 2 and parts[0] in sections and isinstance(parts[1], int):
        return parts[1]
    return None


def _findings(
    error: ValidationError, root: Mapping[str, Any], sections: set[str], prefix: list[Any]
) -> Iterator[Finding]:
    if error.validator == "anyOf" and _is_nullable_wrapper(error) and error.context:
        options: Any = error.validator_value
        null_branches = {i for i, o in enumerate(options) if o.get("type") == "null"}
        inner = [e for e in error.context if e.relative_schema_path[0] not in null_branches]
        from jsonschema.exceptions import best_match

        chosen = best_match(inner or error.context)
        if chosen is not None:
            yield from _findings(chosen, root, sections, prefix)
            return
    parts = [*prefix, *error.absolute_path]
    where = pointer(parts)
    record = _record(parts, sections)
    condition = _condition(root, error)

    def make(
        code: str, message: str, at: str = where, hint: str = "", value: Any = None
    ) -> Finding:
        rule = rules.get(code)
        return Finding(
            code=code,
            severity=rule.severity,
            message=message,
            pointer=at,
            hint=hint or rule.hint,
            value=value,
            record=record,
        )

    keyword = str(error.validator)
    if keyword == "anyOf":
        names = _alternatives(error)
        if names:
            yield make("SQM-S008", f"needs at least one of: {', '.join(names)}")
            return
    if keyword == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = (
            set(error.schema.get("properties", {})) if isinstance(error.schema, Mapping) else set()
        )
        for extra in sorted(set(error.instance) - allowed):
            close = _closest(extra, allowed)
            hint = f"Did you mean {close!r}?" if close else rules.get("SQM-S002").hint
            yield make("SQM-S002", f"unknown field {extra!r}", pointer([*parts, extra]), hint=hint)
        return
    if keyword == "required" and isinstance(error.validator_value, list):
        missing = [
            f
            for f in error.validator_value
            if isinstance(error.instance, Mapping) and f not in error.instance
        ]
        for field in missing or error.validator_value:
            described = _description(error.schema, str(field))
            if condition:
                yield make(
                    "SQM-S009",
                    f"{field!r} is required {condition}",
                    hint=described or rules.get("SQM-S009").hint,
                )
            else:
                yield make(
                    "SQM-S001",
                    f"missing required field {field!r}",
                    hint=(f"{field}: {described}" if described else ""),
                )
        return
    if keyword == "not":
        forbidden = (
            error.validator_value.get("required", [])
            if isinstance(error.validator_value, Mapping)
            else []
        )
        listed = ", ".join(map(repr, forbidden))
        yield make("SQM-S009", f"{listed} must not be given {condition or ''}".strip())
        return
    code = _KEYWORD_CODES.get(keyword, "SQM-S003")
    if condition and code in ("SQM-S005", "SQM-S006", "SQM-S004"):
        yield make(
            "SQM-S009", f"{_message(error, parts)} ({condition})", value=_value(error.instance)
        )
        return
    yield make(code, _message(error, parts), value=_value(error.instance))


def _message(error: ValidationError, parts: Sequence[Any]) -> str:
    field = parts[-1] if parts else "the feed"
    keyword = error.validator
    instance = error.instance
    shown = (
        json.dumps(instance, ensure_ascii=False)
        if not isinstance(instance, dict | list)
        else type(instance).__name__
    )
    spec: Any = error.validator_value
    if keyword == "type":
        expected = " or ".join(spec) if isinstance(spec, list) else str(spec)
        return f"{field!s}: expected {expected}, got {shown}"
    if keyword == "enum":
        options = ", ".join(map(str, spec))
        return f"{field!s}: {shown} is not one of: {options}"
    if keyword == "const":
        return f"{field!s}: must be {error.validator_value!r}, got {shown}"
    if keyword == "pattern":
        return f"{field!s}: {shown} does not match the pattern {error.validator_value}"
    if keyword in ("minimum", "exclusiveMinimum"):
        return f"{field!s}: {shown} is below the minimum {error.validator_value}"
    if keyword in ("maximum", "exclusiveMaximum"):
        return f"{field!s}: {shown} is above the maximum {error.validator_value}"
    if keyword == "format":
        return f"{field!s}: {shown} is not a valid {error.validator_value}"
    if keyword == "contains":
        target = str(spec.get("$ref", "")).rsplit("/", 1)[-1]
        return f"{field!s}: must contain at least one {target}"
    if keyword in ("minItems", "maxItems"):
        return f"{field!s}: {error.message}"
    return f"{field!s}: {error.message}"


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return found[0] if found else None
