"""The ``sqm`` command group and its error boundary."""

from __future__ import annotations

import sys
from typing import Any

import click

from sqm import __version__
from sqm.cli.attest_commands import attest_command, endorse_command
from sqm.cli.mcp_command import mcp_command
from sqm.cli.query_commands import query_group
from sqm.cli.registry_commands import registry_group
from sqm.cli.rules_command import rules_command
from sqm.cli.schema_commands import schema_group
from sqm.cli.serve_command import serve_command
from sqm.cli.supplier_commands import supplier_group, trust_root_command
from sqm.cli.trust_commands import keys_group, verify_command
from sqm.cli.validate_command import validate_command
from sqm.client import ClientError
from sqm.registry.errors import RegistryError
from sqm.schema import SchemaError
from sqm.trust import TrustError
from sqm.validator import ValidatorError


class SqmGroup(click.Group):
    """A group that turns the packages' root errors into a clean message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SchemaError, ValidatorError, TrustError, RegistryError, ClientError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=SqmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sqm")
def main() -> None:
    """SQM, Supplier Quality Metadata: the standard, its validator and its registry."""


main.add_command(schema_group)
main.add_command(validate_command)
main.add_command(rules_command)
main.add_command(keys_group)
main.add_command(verify_command)
main.add_command(serve_command)
main.add_command(registry_group)
main.add_command(supplier_group)
main.add_command(attest_command)
main.add_command(endorse_command)
main.add_command(trust_root_command)
main.add_command(query_group)
main.add_command(mcp_command)
