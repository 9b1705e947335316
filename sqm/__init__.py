"""SQM, Supplier Quality Metadata: the standard, its validator and its registry."""

__version__ = "0.1.0"
