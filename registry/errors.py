"""The root error of :mod:`sqm.registry`."""


class RegistryError(Exception):
    """The registry cannot do what was asked; the message says why."""


class DamagedStoreError(RegistryError):
    """A stored value no longer reads back as it was written: the store is damaged."""
