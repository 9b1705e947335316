"""Who timestamps the log's checkpoints: the registry's own RFC 3161 TSA, and optionally an
external TSA over HTTP (RFC 3161 section 3.4), instead of it or in addition to it."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509

from sqm.registry.errors import RegistryError
from sqm.trust import TrustError, timestamp

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"


class TimestampUnavailableError(RegistryError):
    """A configured TSA could not stamp a checkpoint; integration is retried later."""


class Timestamper(Protocol):
    """Stamps checkpoint text; verifiers check its tokens against ``ca_certificate``."""

    name: str
    ca_certificate: x509.Certificate

    def stamp(self, message: bytes, serial: int) -> bytes: ...


class OwnTSA:
    """The registry's own TSA, in process."""

    def __init__(self, authority: timestamp.Authority, clock: Callable[[], datetime]) -> None:
        self.name = "own"
        self.authority = authority
        self.ca_certificate = authority.ca_certificate
        self.clock = clock

    def stamp(self, message: bytes, serial: int) -> bytes:
        return timestamp.stamp(self.authority, message, self.clock(), serial)


# How far an external TSA's genTime may be from this machine's clock. Why bounded: a bundle's
# logging time is the latest of its checkpoint's tokens' times, and a key is refused for
# signing a minute before its revocation (ingest.REVOCATION_MARGIN); a TSA whose clock ran
# ahead by more would date entries after revocations they preceded. Well under that minute,
# well over a token's whole-second genTime and a request's round trip.
MAX_CLOCK_SKEW = timedelta(seconds=20)


class ExternalTSA:
    """An RFC 3161 TSA at ``url``. Each token is verified (imprint, nonce, signature, chain to
    ``ca_certificate``, ESSCertIDv2, validity at genTime, and a genTime within MAX_CLOCK_SKEW
    of this machine's clock while it was asked) before the log keeps it."""

    def __init__(
        self,
        url: str,
        ca_certificate: x509.Certificate,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise RegistryError(f"the external TSA URL must be http(s): {url!r}")
        self.name = url
        self.url = url
        self.ca_certificate = ca_certificate
        self.timeout = timeout
        self.clock = clock

    @classmethod
    def from_files(cls, url: str, ca_file: Path) -> ExternalTSA:
        try:
            ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"{ca_file}: not a PEM CA certificate for the external TSA: {exc}"
            ) from exc
        return cls(url, ca)

    def stamp(self, message: bytes, serial: int) -> bytes:
        del serial  # the external TSA numbers its own tokens
        nonce = secrets.randbits(63)
        request = urllib.request.Request(
            self.url,
            data=timestamp.request(message, nonce),
            headers={"Content-Type": QUERY, "Accept": REPLY},
            method="POST",
        )
        asked = self.clock()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                token: bytes = response.read(timestamp.MAX_RESPONSE_BYTES + 1)
        except (urllib.error.URLError, OSError) as exc:
            raise TimestampUnavailableError(f"the TSA at {self.url} did not answer: {exc}") from exc
        answered = self.clock()
        try:
            stamped = timestamp.verify(token, message, self.ca_certificate, nonce=nonce).gen_time
        except TrustError as exc:
            raise TimestampUnavailableError(
                f"the TSA at {self.url} gave a bad token: {exc}"
            ) from exc
        if not asked - MAX_CLOCK_SKEW <= stamped <= answered + MAX_CLOCK_SKEW:
            raise TimestampUnavailableError(
                f"the TSA at {self.url} dated its token {stamped.isoformat()}, asked between "
                f"{asked.isoformat()} and {answered.isoformat()} by this machine's clock: one of "
                f"the two clocks is off by more than {MAX_CLOCK_SKEW.total_seconds():g} s"
            )
        return token
