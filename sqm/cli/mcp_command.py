"""``sqm mcp``: serve the registry to AI agents as Model Context Protocol tools."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast

import click

from sqm.cli.registry_options import make_client, registry_options

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@click.command("mcp")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "streamable-http"]),
    default="stdio",
    show_default=True,
    help="stdio: the agent starts this command and talks over stdin/stdout; streamable-http: "
    "serve MCP over HTTP at http://HOST:PORT/mcp.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="streamable-http only.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True,
    help="Seconds to wait for the registry per request.",
)  # fmt: skip
@click.option("--log-level", type=click.Choice(LEVELS), default="WARNING", show_default=True)
@registry_options
def mcp_command(
    transport: str,
    host: str,
    port: int,
    timeout: float,
    log_level: str,
    registry: str,
    trust_root_path: Path | None,
) -> None:
    """Serve the registry as MCP tools: search suppliers, supplier profiles, verified bundles,
    finding explanations, local validation. Every hit and bundle is verified against the trust
    root (pin it with --trust-root) before an agent sees it.

    \b
    sqm mcp --registry http://127.0.0.1:8080 --trust-root root.json
    """
    # Imported here: the MCP SDK is only needed by this command.
    try:
        from sqm.mcp import build_server
    except ImportError as exc:
        raise click.ClickException(
            f"the MCP SDK is not installed ({exc}): pip install 'mcp>=2.3'"
        ) from exc

    client = make_client(registry, trust_root_path)
    client.transport.timeout = timeout
    level = cast(Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], log_level)
    server = build_server(client, log_level=level)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)
