"""Unit conversion to each quantity kind's base unit (UN/ECE Rec 20 factors)."""

from __future__ import annotations

import math

import pytest

from sqm.schema import SchemaError
from sqm.schema.artifacts import to_base, units


def test_every_base_unit_is_its_own_kind_with_factor_one() -> None:
    table = units()
    for code, unit in table.items():
        base = table[unit["base_unit"]]
        assert base["quantity_kind"] == unit["quantity_kind"], code
        assert (base["to_base"], base["base_offset"]) == (1.0, 0.0), code


@pytest.mark.parametrize(
    ("value", "unit", "other_value", "other_unit"),
    [
        (2, "WEE", 14, "DAY"),
        (1, "ANN", 12, "MON"),
        (1, "KWH", 3.6, "3B"),
        (25.4, "MMT", 1, "INH"),
        (100, "CEL", 212, "FAH"),
        (0, "CEL", 273.15, "KEL"),
        (50, "59", 0.005, "P1"),
        (1, "TNE", 1000, "KGM"),
        (1, "BAR", 100, "KPA"),
    ],
)
def test_equal_quantities_have_equal_base_values(
    value: float, unit: str, other_value: float, other_unit: str
) -> None:
    left, left_base = to_base(value, unit)
    right, right_base = to_base(other_value, other_unit)
    assert left_base == right_base
    assert math.isclose(left, right, rel_tol=1e-12)


def test_an_unknown_code_is_refused_by_name() -> None:
    with pytest.raises(SchemaError, match="'XYZ' is not a UN/ECE Rec 20 unit code"):
        to_base(1, "XYZ")
