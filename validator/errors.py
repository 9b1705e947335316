"""The root error of :mod:`sqm.validator`."""


class ValidatorError(Exception):
    """The validator could not run: unreadable input, unknown profile, bad options.

    Problems *in* a feed are findings, not exceptions; this is for everything else.
    """
