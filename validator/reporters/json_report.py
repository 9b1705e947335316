"""Machine-readable report: one JSON document with every finding."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

from sqm.validator.api import ValidationResult


def write_json(results: Sequence[ValidationResult], out: TextIO, colour: bool) -> None:
    """Write ``{"valid": bool, "results": [{source, valid, counts, findings}]}``."""
    del colour
    document = {
        "valid": all(r.is_valid for r in results),
        "results": [
            {
                "source": r.source,
                "valid": r.is_valid,
                "counts": r.counts(),
                "omitted": r.omitted,
                "findings": [f.to_dict() for f in r.findings],
            }
            for r in results
        ],
    }
    json.dump(document, out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")
