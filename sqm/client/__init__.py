"""The registry's Python client: sign, submit and verify.

from sqm.client import RegistryClient
client = RegistryClient("https://registry.example", trust_root=pinned)
submission = client.attest(feed, key)   # the verified bundle of the new log entry
"""

from sqm.client.errors import ClientError
from sqm.client.registry import RegistryClient, Submission, api_root

__all__ = ["ClientError", "RegistryClient", "Submission", "api_root"]
