"""canonical_text (the C-encoder path) against rfc8785, the reference serialiser."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sqm.trust import TrustError
from sqm.trust.canonical import canonical, canonical_text

# Keys and strings across the whole of Unicode (astral characters included: they take the
# reference path, and must still give the reference bytes), numbers across the double range.
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
numbers = (
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            0.0,
            -0.0,
            1e-7,
            1e-6,
            1e-5,
            1e-4,
            0.1,
            1e15,
            1e16,
            1e20,
            1e21,
            5e-324,
            2.0**53,
            2.0**53 - 1,
            2.0**53 + 2,
        ]
    )
)
values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(values)
@example({"\ue000": 1, "\U0001f600": 2, "a": [1.0, 2.5, -0.0, 1e21, 1e-7]})
@example({"z": '\x00\x1f\x7f\u2028"\\/', "feed": {"ppm": 12.0, "cpk": 1.333}})
def test_the_fast_path_gives_the_reference_bytes(value: Any) -> None:
    expected = canonical(value)
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert canonical_text(text) == expected
        assert canonical_text(text.encode()) == expected
    assert canonical_text(json.dumps({"predicate": value}), "predicate") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"b":1.0,"a":[1E2,0.5,-0]}', b'{"a":[100,0.5,0],"b":1}'),
        ('{"x":0.00001,"y":1e21,"z":1.2345678901234568e20}', None),
        ('"\\ud83d\\ude00"', '"\U0001f600"'.encode()),
        ('{"\\u00e9":"\\u001f"}', '{"é":"\\u001f"}'.encode()),
    ],
)
def test_numbers_escapes_and_surrogates(text: str, expected: bytes | None) -> None:
    wanted = expected if expected is not None else canonical(json.loads(text))
    assert canonical_text(text) == wanted
    if expected is None:  # the exponent forms differ between Python and ECMAScript
        assert wanted == b'{"x":0.00001,"y":1e+21,"z":123456789012345680000}'


@pytest.mark.parametrize("text", ["9007199254740993", '{"a": NaN}', "[Infinity]"])
def test_values_without_a_canonical_form_are_refused(text: str) -> None:
    with pytest.raises(TrustError):
        canonical_text(text)


def test_text_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        canonical_text(b'{"a": ')
