"""The SQM validator: structure, semantics and plausibility of supplier quality feeds.

>>> from sqm.validator import validate
>>> result = validate("examples/feeds/automotive-machining.json")  # doctest: +SKIP
>>> result.is_valid  # doctest: +SKIP
True
"""

from sqm.validator.api import (
    ValidationResult,
    best_match,
    check_organization,
    iter_findings,
    iter_stream_findings,
    load_baseline,
    validate,
)
from sqm.validator.errors import ValidatorError
from sqm.validator.findings import Finding, Severity

__all__ = [
    "Finding",
    "Severity",
    "ValidationResult",
    "ValidatorError",
    "best_match",
    "check_organization",
    "iter_findings",
    "iter_stream_findings",
    "load_baseline",
    "validate",
]
