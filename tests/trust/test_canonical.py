"""The fast path of canonical JSON writes exactly the bytes of the RFC 8785 reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sqm.trust import TrustError
from sqm.trust.canonical import canonical
from tests.conftest import EXAMPLES

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=40,
)


@given(values)
@settings(max_examples=600, deadline=None)
def test_canonical_equals_the_reference(value: Any) -> None:
    try:
        expected = bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        with pytest.raises(TrustError):
            canonical(value)
        return
    assert canonical(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        1.0, -0.0, 0.0, 1e16, 1e21, 1e-7, 1e-5, 123456789012345680.0, 0.1, 5e-324,
        {"b": 1, "a": [1.5, "é", "\U0001f600", "\u2028"]},
        {"\U0001f600": 1, "\ue000": 2},  # UTF-16 order differs from code-point order here
        ["\x00\x1f\x7f\"\\/"],
        2**53 - 1,
    ],
)  # fmt: skip
def test_edge_cases_equal_the_reference(value: Any) -> None:
    assert canonical(value) == bytes(rfc8785.dumps(value))


def test_the_example_feeds_equal_the_reference() -> None:
    for path in sorted((EXAMPLES / "feeds").glob("*.json")):
        feed = json.loads(path.read_text())
        assert canonical(feed) == bytes(rfc8785.dumps(feed))


@pytest.mark.parametrize("value", [2**53, float("nan"), {1: "x"}, "\ud800"])
def test_what_jcs_cannot_carry_is_refused(value: Any) -> None:
    with pytest.raises(TrustError):
        canonical(value)
