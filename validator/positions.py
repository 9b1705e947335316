"""Line and column of a JSON Pointer in the text it came from (JSON or YAML).

Neither ``json`` nor ``orjson`` reports positions, so :func:`json_positions` scans the text with
one regular expression, only when there are findings to place. YAML positions come from the
node marks of PyYAML's composer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from sqm.validator.findings import escape_pointer_token

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+', re.DOTALL)


def json_positions(text: str) -> dict[str, tuple[int, int]]:
    """Pointer to (line, column) of the value's first character, for every value."""
    positions: dict[str, tuple[int, int]] = {}
    line_starts = [0]
    line_starts.extend(m.end() for m in re.finditer("\n", text))

    def where(offset: int) -> tuple[int, int]:
        low, high = 0, len(line_starts) - 1
        while low < high:
            mid = (low + high + 1) // 2
            if line_starts[mid] <= offset:
                low = mid
            else:
                high = mid - 1
        return low + 1, offset - line_starts[low] + 1

    # Stack of (pointer of the container, is_object, next index or pending key).
    stack: list[list[Any]] = []
    expecting_key = False
    pending_key: str | None = None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ",:":
            if token == "," and stack and stack[-1][1]:
                expecting_key = True
            continue
        if token in "}]":
            stack.pop()
            expecting_key = False
            continue
        if expecting_key and token.startswith('"'):
            pending_key = json.loads(token)
            expecting_key = False
            continue
        # A value starts here: compute its pointer.
        if not stack:
            current = ""
        elif stack[-1][1]:
            current = stack[-1][0] + "/" + escape_pointer_token(pending_key or "")
        else:
            current = stack[-1][0] + "/" + str(stack[-1][2])
            stack[-1][2] += 1
        positions.setdefault(current, where(match.start()))
        if token == "{":
            stack.append([current, True, 0])
            expecting_key = True
        elif token == "[":
            stack.append([current, False, 0])
    return positions


def yaml_positions(text: str) -> dict[str, tuple[int, int]]:
    """Pointer to (line, column) for every node of a YAML document."""
    positions: dict[str, tuple[int, int]] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return positions

    visited: set[int] = set()

    def walk(node: Any, at: str) -> None:
        positions.setdefault(at, (node.start_mark.line + 1, node.start_mark.column + 1))
        if id(node) in visited:
            return  # an alias: its values stand at the anchor, already placed
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, f"{at}/{escape_pointer_token(str(key.value))}")
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                walk(value, f"{at}/{index}")

    if root is not None:
        walk(root, "")
    return positions


def nearest(positions: dict[str, tuple[int, int]], pointer: str) -> tuple[int, int] | None:
    """The position of ``pointer`` or of its nearest ancestor (a missing field's parent)."""
    current = pointer
    while True:
        if current in positions:
            return positions[current]
        if not current:
            return None
        current = current.rsplit("/", 1)[0]
