"""The ``sqm`` command: wiring only; each subcommand calls into the packages."""

from sqm.cli.main import main

__all__ = ["main"]
