"""``sqm rules``: list the validator's rule codes."""

from __future__ import annotations

import click

from sqm.validator import rules


@click.command("rules")
@click.option("--markdown", is_flag=True, help="Print the rules page for the docs.")
def rules_command(markdown: bool) -> None:
    """List every rule code with its severity, layer and title."""
    if markdown:
        click.echo(rules.rules_markdown(), nl=False)
        return
    for rule in rules.all_rules():
        click.echo(f"{rule.code}  {rule.severity.value:<7}  {rule.layer:<12}  {rule.title}")
