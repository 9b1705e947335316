"""The root error of :mod:`sqm.schema`."""


class SchemaError(Exception):
    """A problem with the standard's source, its generated artifacts or a profile lookup."""
