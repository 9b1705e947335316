"""Check digits of LEIs (ISO 17442, ISO 7064 mod 97-10) and GS1 keys (GLN, GTIN: mod 10).

The verdicts are python-stdnum's (``stdnum.lei.is_valid``, ``stdnum.ean.is_valid``); codes of
plain ASCII letters and digits, which is what feeds carry, are checked here directly, and
anything else is handed to stdnum itself. Importing stdnum costs several megabytes of memory
(its Unicode tables), which a validator streaming a million records cannot spare for codes it
never sees; ``tests/validator/test_checkdigits.py`` proves the two agree.
"""

from __future__ import annotations

_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")


def lei_is_valid(code: str) -> bool:
    """``stdnum.lei.is_valid(code)``: the ISO 7064 mod 97-10 checksum of the code is 1."""
    if code and _ALPHANUMERIC.issuperset(code):
        digits = "".join(str(int(char, 36)) for char in code.upper())
        return int(digits) % 97 == 1
    from stdnum import lei

    return bool(lei.is_valid(code))


def ean_is_valid(code: str) -> bool:
    """``stdnum.ean.is_valid(code)``: 8, 12, 13 or 14 digits whose last is the GS1 check digit."""
    if code and _DIGITS.issuperset(code):
        if len(code) not in (14, 13, 12, 8):
            return False
        weighted = sum((3, 1)[i % 2] * int(n) for i, n in enumerate(reversed(code[:-1])))
        return str((10 - weighted) % 10) == code[-1]
    from stdnum import ean

    return bool(ean.is_valid(code))
