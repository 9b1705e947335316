"""canonical and canonical_text (the C-encoder paths) against rfc8785, the reference."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sqm.trust import TrustError
from sqm.trust.bundle import statement
from sqm.trust.canonical import canonical, canonical_text, loads_with_canonical
from tests.conftest import EXAMPLES

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
    expected = bytes(rfc8785.dumps(value))
    assert canonical(value) == expected
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


@pytest.mark.parametrize(
    "text",
    [
        "9007199254740993",
        '{"a": NaN}',
        "[Infinity]",
        b'{"a":"\xed\xa0\x80"}',  # a lone surrogate, encoded as UTF-8: json.loads takes it
        b'{"\xed\xbf\xbf":1}',
    ],
)
def test_values_without_a_canonical_form_are_refused(text: str | bytes) -> None:
    with pytest.raises(TrustError):
        canonical_text(text)


def test_text_that_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        canonical_text(b'{"a": ')


@settings(max_examples=400, deadline=None)
@given(values)
@example({"predicate": {"ppm": 12.0, "cpk": 1.333, "n": 5}})
@example({"predicate": [1e21, 1e-7, 2.0**53 + 2, "\U0001f600"]})
@example([1.0, {"predicate": 2}])
# Integral floats deep inside: the printed copy holds ints, the parsed value keeps floats.
@example({"predicate": [[1.0, "a", None, True], {"x": [2.0, -0.0]}, 3]})
@example({"predicate": [{"ok": 1.5}, [1e-5]]})  # a number the walk leaves to the reference path
@example(7.0)  # a document that is one number
def test_one_parse_gives_what_json_loads_and_canonical_text_give(value: Any) -> None:
    for document in (value, {"predicate": value, "kind": "x"}):
        for text in (json.dumps(document), json.dumps(document, ensure_ascii=False)):
            parsed, jcs = loads_with_canonical(text.encode(), "predicate")
            # repr tells 1.0 from 1: the value must be json.loads's to the type.
            assert repr(parsed) == repr(json.loads(text))
            if isinstance(document, dict) and "predicate" in document:
                assert jcs in (None, canonical_text(text, "predicate"))
            else:
                assert jcs is None


@pytest.mark.parametrize(
    ("text", "jcs"),
    [
        (b'{"predicate": {"b": 1.0, "a": 2}}', b'{"a":2,"b":1}'),  # 1.0: parsed again as float
        (b'{"predicate": {"a": 9007199254740993}}', None),  # beyond 2^53: the caller decides
        (b'{"predicate": NaN}', None),
        (b'{"predicate": "\\ud83d\\ude00"}', None),
        (b'{"predicate": "\xed\xa0\x80"}', None),  # a UTF-8 surrogate: canonical_text refuses it
        (b"[1, 2]", None),
        (b'{"other": 1}', None),
    ],
)
def test_one_parse_leaves_the_hard_cases_to_canonical_text(text: bytes, jcs: bytes | None) -> None:
    parsed, got = loads_with_canonical(text, "predicate")
    assert repr(parsed) == repr(json.loads(text)) and got == jcs


def test_one_parse_serves_a_typical_feed() -> None:
    # What it is for: a submitted statement about an example feed takes one parse.
    feed = json.loads((EXAMPLES / "feeds" / "automotive-machining.json").read_text())
    payload = json.dumps(statement(feed)).encode()
    parsed, jcs = loads_with_canonical(payload, "predicate")
    assert parsed == json.loads(payload) and jcs == canonical(feed)


def test_one_parse_refuses_text_that_is_not_json() -> None:
    with pytest.raises(ValueError):
        loads_with_canonical(b'{"predicate": ', "predicate")


def test_nesting_deeper_than_orjson_prints_still_gives_the_reference_bytes() -> None:
    # orjson refuses to print beyond 255 levels; the standard encoder takes over.
    value: Any = {"ppm": 12.5}
    for depth in range(300):
        value = {"level": depth, "inner": [value]}
    text = json.dumps({"predicate": value}).encode()
    assert canonical_text(text, "predicate") == canonical(value)
    assert loads_with_canonical(text, "predicate") == (json.loads(text), canonical(value))


class _Text(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        ("a", 1),  # a tuple
        {"k": ("a", [1.5])},
        _Text("x"),
        {_Text("k"): _Text("v")},
        {"k": "\U0001f600"},  # beyond the BMP: ordered by UTF-16 code units in JCS
        {"\U0001f600": 1, "\ue000": 2},
        {"n": 2.0**53, "m": 1e21, "s": 1e-7, "z": -0.0},
        {"deep": [[[[[[[[[[[[]]]]]]]]]]]]},
    ],
    ids=["tuple", "nested-tuple", "str-subclass", "str-subclass-key", "astral-value",
         "astral-keys", "numbers-python-prints-otherwise", "nested"],
)  # fmt: skip
def test_values_beyond_the_fast_path_give_the_reference_bytes(value: Any) -> None:
    assert canonical(value) == bytes(rfc8785.dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        {1: "integer key"},
        {True: "boolean key"},
        {"big": 2**53},
        {"nan": float("nan")},
        {"inf": float("inf")},
        {"surrogate": "\ud800"},
        {"when": __import__("datetime").date(2026, 12, 7)},
        {"bytes": b"raw"},
    ],
    ids=["int-key", "bool-key", "beyond-2^53", "nan", "infinity", "lone-surrogate", "date",
         "bytes"],
)  # fmt: skip
def test_values_the_reference_refuses_are_refused(value: Any) -> None:
    with pytest.raises((rfc8785.CanonicalizationError, TypeError, ValueError)) as reference:
        rfc8785.dumps(value)
    with pytest.raises(TrustError) as ours:
        canonical(value)
    assert str(reference.value) in str(ours.value)
