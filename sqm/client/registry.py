"""A typed client of the registry's write API that verifies what it gets back.

Every bundle the client receives is verified offline against the trust root before it is
returned, so a caller never holds an unverified bundle by accident. Pin the trust root
(``trust_root=``) from a source you trust; without one, the client fetches the registry's own
(trust on first use) and says so in :attr:`RegistryClient.trust_root_pinned`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sqm.client import requests
from sqm.client.errors import ClientError
from sqm.client.http import Transport
from sqm.client.search import Hit, SearchPage, check_page
from sqm.trust import TrustError
from sqm.trust import bundle as trust_bundle
from sqm.trust.bundle import Bundle, Report, Step, TrustRoot
from sqm.trust.checkpoint import open_note
from sqm.trust.errors import VerificationError
from sqm.trust.recheck import recheck, unavailable

API_PREFIX = "/api/v1"


def _unless_answered(error: ClientError) -> None:
    """Raise ``error`` unless the registry answered it: an unreachable registry, or one that
    says to come back later (429, 5xx), gives no verdict, while an answer that does not hold
    up is a failed check."""
    if error.status == 0 or error.status == 429 or error.status >= 500:
        raise error


def api_root(registry: str) -> str:
    """The API root of a registry given by its base URL (with or without ``/api/v1``)."""
    base = registry.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ClientError(
            0, "invalid_url", f"the registry URL must start with http(s)://: {registry!r}"
        )
    return base if base.endswith(API_PREFIX) else base + API_PREFIX


@dataclass(frozen=True)
class Submission:
    """A submitted attestation: its verified bundle, and whether it was new (201) or an exact
    resubmission of an entry already logged (409)."""

    bundle: Bundle
    report: Report
    new: bool

    @property
    def log_index(self) -> int:
        return self.bundle.attestation.index


class RegistryClient:
    """Register identities and keys, attest feeds and endorse attestations at one registry."""

    def __init__(
        self,
        registry: str,
        trust_root: TrustRoot | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.transport = Transport(api_root(registry), timeout)
        self._trust_root = trust_root
        self.trust_root_pinned = trust_root is not None

    # --- trust -------------------------------------------------------------------------------

    def fetch_trust_root(self) -> dict[str, Any]:
        """The trust root document the registry serves (as JSON)."""
        _, answer = self.transport.request("GET", "/trust-root")
        if not isinstance(answer, dict):
            raise ClientError(200, "malformed_answer", "the trust root is not a JSON object")
        return answer

    @property
    def trust_root(self) -> TrustRoot:
        if self._trust_root is None:
            try:
                self._trust_root = TrustRoot.from_json(self.fetch_trust_root())
            except TrustError as exc:
                raise ClientError(200, "malformed_answer", str(exc)) from exc
        return self._trust_root

    def verify(self, made: Bundle) -> Report:
        """Verify a bundle against the trust root; raises VerificationError naming the step."""
        report = trust_bundle.verify(made, self.trust_root)
        if not report.ok:
            failed = next(step for step in report.steps if not step.ok)
            raise VerificationError(f"the registry's bundle fails {failed.name}: {failed.detail}")
        return report

    def _bundle(self, answer: Any) -> tuple[Bundle, Report]:
        try:
            made = Bundle.from_json(answer)
        except TrustError as exc:
            raise ClientError(200, "malformed_answer", f"not a bundle: {exc}") from exc
        return made, self.verify(made)

    # --- identities and keys -------------------------------------------------------------------

    def register(
        self, organization: Mapping[str, Any], key: Ed25519PrivateKey, endorser: bool = False
    ) -> dict[str, Any]:
        """Register a supplier (or, with ``endorser``, a certification body or auditor) and its
        first key. Raises ClientError ``supplier_exists`` for a known identity."""
        body = requests.registration(organization, key)
        path = "/endorsers" if endorser else "/suppliers"
        status, answer = self.transport.request("POST", path, body)
        if status == 409:
            raise ClientError(409, str(answer.get("error")), str(answer.get("message")))
        return dict(answer)

    def add_key(
        self, identity: str, current: Ed25519PrivateKey, new: Ed25519PrivateKey
    ) -> dict[str, Any]:
        """Rotate in ``new``, authorised by ``current``."""
        status, answer = self.transport.request(
            "POST", f"/suppliers/{identity}/keys", requests.rotation(identity, current, new)
        )
        if status == 409:
            raise ClientError(409, str(answer.get("error")), str(answer.get("message")))
        return dict(answer)

    def revoke(self, identity: str, key: Ed25519PrivateKey, revoked_at: str) -> dict[str, Any]:
        """Revoke ``key`` from ``revoked_at`` on, signed by the key itself."""
        status, answer = self.transport.request(
            "POST",
            f"/keys/{requests.key_id(key)}/revocation",
            requests.revocation(identity, key, revoked_at),
        )
        if status == 409:
            raise ClientError(409, str(answer.get("error")), str(answer.get("message")))
        return dict(answer)

    # --- reading: search and profiles ------------------------------------------------------------

    def search(
        self,
        where: Sequence[str] = (),
        *,
        cursor: str | None = None,
        limit: int = 20,
        **filters: str | None,
    ) -> SearchPage:
        """Suppliers whose latest attestation meets every condition and filter (the names of
        GET /api/v1/search/suppliers: ``country``, ``certification``, ``valid_on``,
        ``classification``, ``characteristic_class``, ``assurance``, ``fresh_within``,
        ``as_of``, ``match``, ``sort``). Each hit's inclusion proof is verified against the
        stated checkpoint before the page is returned."""
        pairs: list[tuple[str, str]] = [("where", condition) for condition in where]
        pairs += [(name, value) for name, value in filters.items() if value is not None]
        pairs += [("limit", str(limit)), ("proofs", "inline")]
        if cursor is not None:
            pairs.append(("cursor", cursor))
        _, answer = self.transport.request("GET", f"/search/suppliers?{urlencode(pairs)}")
        return check_page(answer, self.trust_root)

    def search_all(self, where: Sequence[str] = (), **filters: str | None) -> Iterator[Hit]:
        """Every hit of a search, page after page (each page verified)."""
        cursor = None
        while True:
            page = self.search(where, cursor=cursor, limit=100, **filters)
            yield from page.hits
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def metrics(self) -> list[dict[str, Any]]:
        """Every metric a search may name: ``name``, ``section``, ``unitBearing``,
        ``description``."""
        _, answer = self.transport.request("GET", "/metrics")
        try:
            return [dict(metric) for metric in answer["metrics"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError(200, "malformed_answer", f"not a metric catalogue: {exc}") from exc

    def fetch_bundle(self, index: int) -> Bundle:
        """The bundle of the attestation at log ``index``, NOT verified: for callers that
        report every verification step themselves (:func:`sqm.trust.bundle.verify`)."""
        _, answer = self.transport.request("GET", f"/bundles/{index}")
        try:
            return Bundle.from_json(answer)
        except TrustError as exc:
            raise ClientError(200, "malformed_answer", f"not a bundle: {exc}") from exc

    def consistency(self, old_size: int, new_size: int) -> tuple[bytes, ...]:
        """The registry's proof that its tree of ``new_size`` entries extends the tree of
        ``old_size``, NOT verified (:func:`sqm.trust.merkle.verify_consistency` checks it)."""
        query = urlencode({"old": old_size, "new": new_size})
        _, answer = self.transport.request("GET", f"/log/consistency?{query}")
        try:
            hashes = answer["hashes"]
            if not isinstance(hashes, list):
                raise TypeError("hashes is not a list")
            return tuple(base64.b64decode(h, validate=True) for h in hashes)
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError(200, "malformed_answer", f"not a consistency proof: {exc}") from exc

    def recheck(self, held: Bundle) -> Report:
        """Check a bundle saved earlier against the registry's log now: the current tree
        extends the bundle's checkpoint, still holds the entry unchanged, and holds no
        revocation of the key from before the attestation was logged. Every step is in the
        report (:func:`sqm.trust.recheck.recheck`); the bundle's own offline checks are
        :meth:`verify`'s. An answer that does not hold up (a refusal, junk) is a failed step;
        ClientError when the registry cannot be asked now (unreachable, 429, 5xx): no verdict."""
        index = held.attestation.index
        try:
            current = self.fetch_bundle(index)
        except ClientError as exc:
            _unless_answered(exc)
            return unavailable(index, str(exc))
        proof: tuple[bytes, ...] = ()
        try:
            # The sizes to ask a proof between; recheck verifies both notes and the proof.
            old = open_note(held.checkpoint, self.trust_root.log_key).size
            new = open_note(current.checkpoint, self.trust_root.log_key).size
        except (TrustError, ValueError):  # ValueError: text no encoder takes (a lone surrogate)
            pass  # recheck reports the note that does not verify
        else:
            if 0 < old < new:
                try:
                    proof = self.consistency(old, new)
                except ClientError as exc:
                    _unless_answered(exc)
                    return Report(
                        [Step("current log extends the bundle's", False, f"no proof: {exc}")]
                    )
        return recheck(held, current, proof, self.trust_root)

    def supplier(self, identity: str, as_of: str | None = None) -> dict[str, Any]:
        """A supplier's quality profile (identity, keys, latest attestation, metrics,
        certifications, history). Verify what you rely on with :meth:`claims`."""
        query = "" if as_of is None else f"?{urlencode({'as_of': as_of})}"
        _, answer = self.transport.request("GET", f"/suppliers/{quote(identity, safe=':')}{query}")
        return dict(answer)

    def claims(self, index: int) -> tuple[dict[str, Any], Report]:
        """The feed of the attestation at log ``index``, from its verified bundle."""
        _, report = self.bundle(index)
        if report.feed is None:
            raise VerificationError(f"the bundle of entry {index} carries no feed")
        return report.feed, report

    # --- attestations and endorsements ---------------------------------------------------------

    def attest(self, feed: Mapping[str, Any], key: Ed25519PrivateKey) -> Submission:
        """Sign and submit a feed; the verified bundle of its log entry.

        An exact resubmission returns the existing entry (``new`` False); a refused feed
        raises ClientError (``invalid_feed`` carries the validator's findings in ``details``).
        """
        envelope = requests.attestation(feed, key)
        status, answer = self.transport.request("POST", "/attestations", envelope.to_json())
        if status == 409:
            if answer.get("error") != "already_logged":
                raise ClientError(409, str(answer.get("error")), str(answer.get("message")))
            answer = answer["bundle"]
        made, report = self._bundle(answer)
        # A verified bundle of some other entry proves nothing about this submission.
        if made.envelope.payload != envelope.payload or (
            status == 201 and made.envelope.signatures != envelope.signatures
        ):
            raise ClientError(
                status,
                "wrong_bundle",
                f"the registry answered with the bundle of log entry {made.attestation.index}, "
                "which does not hold the envelope submitted",
            )
        return Submission(made, report, new=status == 201)

    def bundle(self, index: int) -> tuple[Bundle, Report]:
        """The verified bundle of the attestation at log ``index``."""
        _, answer = self.transport.request("GET", f"/bundles/{index}")
        made, report = self._bundle(answer)
        if made.attestation.index != index:
            raise ClientError(
                200,
                "wrong_bundle",
                f"asked for the bundle of log entry {index}, got entry {made.attestation.index}'s",
            )
        return made, report

    def endorse(
        self,
        endorser: str,
        index: int,
        assurance: str,
        key: Ed25519PrivateKey,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """Endorse the attestation at log ``index``: its bundle is fetched and verified first,
        and the endorsement names the digest of exactly the payload that was verified."""
        if assurance not in trust_bundle.ENDORSEMENT_LEVELS:
            raise ClientError(
                0,
                "invalid_assurance",
                f"assurance must be one of {', '.join(trust_bundle.ENDORSEMENT_LEVELS)}",
            )
        made, _ = self.bundle(index)
        if made.endorsing:
            raise ClientError(
                0,
                "not_an_attestation",
                f"log entry {index} is an endorsement: endorse the attestation it names",
            )
        digest = hashlib.sha256(made.envelope.payload).hexdigest()
        envelope = requests.endorsement(endorser, index, digest, assurance, key, scope)
        status, answer = self.transport.request("POST", "/endorsements", envelope.to_json())
        if status == 409 and answer.get("error") != "already_logged":
            raise ClientError(409, str(answer.get("error")), str(answer.get("message")))
        return dict(answer)  # 409 already_logged: the same endorsement's entry, logged before
