"""Layer 2, structure: the generated JSON Schema of the core and of every declared profile.

Each JSON Schema error becomes one finding with a stable code (SQM-S001..S011), the JSON
Pointer of the offending value and, where the schema has one, the field's description as hint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

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


@cache
def schema_validator(profile: str = CORE_PROFILE) -> Draft202012Validator:
    """The compiled reference validator for the core or a profile (built once)."""
    return Draft202012Validator(
        json_schema(profile), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def structure_findings(
    document: Any, profiles: Sequence[str] = (), *, record_sections: Iterable[str] = ()
) -> Iterator[Finding]:
    """Findings for ``document`` against the core schema and each named profile.

    A profile imports the core, so the same violation can be reported by both; it is reported
    once.
    """
    sections = set(record_sections)
    seen: set[tuple[str, str, str]] = set()
    for name in (CORE_PROFILE, *[p for p in profiles if p != CORE_PROFILE]):
        root = json_schema(name)
        for error in schema_validator(name).iter_errors(document):
            for finding in _findings(error, root, sections):
                key = (finding.code, finding.pointer, finding.message)
                if key not in seen:
                    seen.add(key)
                    yield finding


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
    error: ValidationError, root: Mapping[str, Any], sections: set[str]
) -> Iterator[Finding]:
    if error.validator == "anyOf" and _is_nullable_wrapper(error) and error.context:
        options: Any = error.validator_value
        null_branches = {i for i, o in enumerate(options) if o.get("type") == "null"}
        inner = [e for e in error.context if e.relative_schema_path[0] not in null_branches]
        chosen = best_match(inner or error.context)
        if chosen is not None:
            yield from _findings(chosen, root, sections)
            return
    parts = list(error.absolute_path)
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
        yield make("SQM-S009", f"{_message(error)} ({condition})", value=_value(error.instance))
        return
    yield make(code, _message(error), value=_value(error.instance))


def _message(error: ValidationError) -> str:
    field = error.absolute_path[-1] if error.absolute_path else "the feed"
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
