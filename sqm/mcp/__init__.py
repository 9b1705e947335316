"""An MCP (Model Context Protocol) server that lets AI agents use an SQM registry as tools.

Search suppliers, read a supplier's profile, fetch and verify a bundle, explain a validator
finding, validate a feed. Every hit and bundle is verified against a pinned trust root by
:class:`sqm.client.RegistryClient` before an agent sees it. Run it with ``sqm mcp``::

    from sqm.client import RegistryClient
    from sqm.mcp import build_server

    build_server(RegistryClient(url, trust_root=pinned)).run()  # stdio
"""

from sqm.mcp.server import build_server
from sqm.mcp.tools import ArgumentError, RegistryTools

__all__ = ["ArgumentError", "RegistryTools", "build_server"]
