"""Findings: what the validator says about a feed, as data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """How bad a finding is. Errors make a feed invalid; warnings and infos do not."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "info": 0}[self.value]


@dataclass(frozen=True)
class Finding:
    """One problem found in a feed, with where it is and how to fix it."""

    code: str
    severity: Severity
    message: str
    pointer: str = ""
    hint: str = ""
    value: Any = None
    record: int | None = None
    line: int | None = None
    column: int | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; absent location parts are left out."""
        data: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "pointer": self.pointer,
            "hint": self.hint,
        }
        for name in ("value", "record", "line", "column", "source"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


def escape_pointer_token(token: str | int) -> str:
    """Escape one JSON Pointer reference token (RFC 6901 section 3)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer(parts: Any) -> str:
    """A JSON Pointer (RFC 6901) from path parts."""
    return "".join("/" + escape_pointer_token(p) for p in parts)
