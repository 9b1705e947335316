"""Reporters turn findings into text for people or JSON/SARIF for machines, chosen by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TextIO

from sqm.validator.api import ValidationResult
from sqm.validator.errors import ValidatorError
from sqm.validator.reporters.json_report import write_json
from sqm.validator.reporters.sarif import write_sarif
from sqm.validator.reporters.text import write_text

Reporter = Callable[[Sequence[ValidationResult], TextIO, bool], None]

REPORTERS: dict[str, Reporter] = {"text": write_text, "json": write_json, "sarif": write_sarif}


def get_reporter(name: str) -> Reporter:
    """The reporter registered under ``name``."""
    try:
        return REPORTERS[name]
    except KeyError:
        raise ValidatorError(
            f"unknown format {name!r}; choose one of {', '.join(REPORTERS)}"
        ) from None
