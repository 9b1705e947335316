"""The root error of :mod:`sqm.registry`."""


class RegistryError(Exception):
    """The registry cannot do what was asked; the message says why."""
