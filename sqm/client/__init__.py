"""The registry's Python client: sign, submit and verify.

from sqm.client import RegistryClient
client = RegistryClient("https://registry.example", trust_root=pinned)
submission = client.attest(feed, key)   # the verified bundle of the new log entry
"""

from sqm.client.errors import ClientError
from sqm.client.registry import RegistryClient, Submission, api_root
from sqm.client.search import Hit, Match, SearchPage

__all__ = ["ClientError", "Hit", "Match", "RegistryClient", "SearchPage", "Submission", "api_root"]
