"""Log leaves, the offline verification bundle, and the trust root it verifies against.

A bundle lets anyone check, without the registry, that a supplier signed a feed, that the
signing key was registered for that supplier, that the log included both, that the log signed
the checkpoint, and that a TSA timestamped that checkpoint. The format is documented in
docs/bundle.md; this module is its single definition.

Statement: the DSSE payload is an in-toto Statement v1 whose predicate is the SQM feed (payload
type ``application/vnd.in-toto+json``), so generic in-toto and Sigstore tooling can read the
envelope, and the subject names the feed by the SHA-256 of its canonical JSON.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from sqm.trust import dsse, merkle, timestamp
from sqm.trust.canonical import canonical, canonical_text, json_error, unique_members
from sqm.trust.checkpoint import Checkpoint, NoteVerifier, open_note
from sqm.trust.errors import TrustError, VerificationError

BUNDLE_MEDIA_TYPE = "application/vnd.sqm.bundle.v0.1+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://w3id.org/sqm/v0.1/feed"
KEY_REGISTRATION = b"sqm-key-registration-v1"


def statement(feed: Mapping[str, Any], canonical_feed: bytes | None = None) -> dict[str, Any]:
    """The in-toto Statement v1 for a feed (``canonical_feed``: its JCS bytes, when known)."""
    header = feed.get("header", {})
    name = str(header.get("feed_id", "feed")) if isinstance(header, Mapping) else "feed"
    digest = hashlib.sha256(canonical_feed or canonical(feed)).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": dict(feed),
    }


def supplier_identity(organization: Any) -> str:
    """``scheme:code`` of an organisation's first identifier: how the registry names it."""
    try:
        first = organization["identifiers"][0]
        return f"{first['scheme']}:{first['code']}"
    except (KeyError, IndexError, TypeError):
        raise TrustError(
            "the organisation needs at least one identifier (scheme and code)"
        ) from None


def key_id(public_key: bytes) -> str:
    """A supplier key's id: hex SHA-256 of the raw Ed25519 public key."""
    return hashlib.sha256(public_key).hexdigest()


def registration_message(supplier: str, public_key: bytes) -> bytes:
    """What a supplier signs with its new key to prove possession."""
    return canonical(
        {
            "purpose": KEY_REGISTRATION.decode(),
            "supplier": supplier,
            "publicKey": base64.b64encode(public_key).decode(),
        }
    )


def rotation_message(supplier: str, new_key: str) -> bytes:
    """What a supplier's current key signs to authorise an additional (rotated-in) key."""
    return canonical({"purpose": "sqm-key-rotation-v1", "supplier": supplier, "newKeyId": new_key})


def key_leaf(
    supplier: str,
    public_key: bytes,
    valid_from: str,
    possession: bytes,
    authorized_by: str | None = None,
    authorization: bytes = b"",
    *,
    organization: dict[str, Any] | None = None,
    role: str | None = None,
) -> bytes:
    """The log leaf that registers a supplier key; a rotated-in key names the current key that
    authorised it and carries that key's signature over the rotation message. The leaf of an
    identity's first key also records the identity as registered: its ``organization`` (name,
    identifiers, country, URL, as the registration gave them) and its ``role`` (``supplier``
    or ``endorser``), so that the log, not only the registry's tables, says who holds the key.
    TrustError when the organisation has no canonical JSON form."""
    leaf: dict[str, Any] = {
        "kind": "supplier-key",
        "supplier": supplier,
        "keyId": key_id(public_key),
        "publicKey": base64.b64encode(public_key).decode(),
        "validFrom": valid_from,
        "proofOfPossession": base64.b64encode(possession).decode(),
    }
    if organization is not None:
        leaf["organization"] = organization
        leaf["role"] = role or "supplier"
    if authorized_by is not None:
        leaf["authorizedBy"] = authorized_by
        leaf["authorization"] = base64.b64encode(authorization).decode()
    return canonical(leaf)


def revocation_message(supplier: str, key: str, revoked_at: str) -> bytes:
    """What a key holder signs to revoke its key from ``revoked_at`` on."""
    return canonical(
        {
            "purpose": "sqm-key-revocation-v1",
            "supplier": supplier,
            "keyId": key,
            "revokedAt": revoked_at,
        }
    )


def revocation_leaf(supplier: str, key: str, revoked_at: str, by: str, signature: bytes) -> bytes:
    """The log leaf that revokes a supplier key from ``revoked_at`` on (``by``: key-holder or
    operator; the key holder's signature, empty for the operator)."""
    return canonical(
        {
            "kind": "key-revocation",
            "supplier": supplier,
            "keyId": key,
            "revokedAt": revoked_at,
            "by": by,
            "signature": base64.b64encode(signature).decode(),
        }
    )


VERIFICATION_STATUSES = ("unverified", "verified", "suspended")


def verification_leaf(supplier: str, status: str, set_at: str) -> bytes:
    """The log leaf of the operator's verification status for a supplier identity, from
    ``set_at`` on: who the identity is was checked (verified), or is in doubt (suspended)."""
    return canonical(
        {
            "kind": "supplier-verification",
            "supplier": supplier,
            "verification": status,
            "setAt": set_at,
            "by": "operator",
        }
    )


ENDORSEMENT_TYPE = "application/vnd.sqm.endorsement.v0.1+json"
ENDORSEMENT_LEVELS = ("second_party", "third_party", "third_party_accredited")


def endorsement_leaf(
    endorser: str,
    attestation_index: int,
    payload_sha256: str,
    assurance: str,
    envelope: dsse.Envelope,
) -> bytes:
    """The log leaf of a signed endorsement of a logged attestation."""
    return canonical(
        {
            "kind": "endorsement",
            "endorser": endorser,
            "attestationIndex": attestation_index,
            "payloadSha256": payload_sha256,
            "assurance": assurance,
            "envelopeSha256": hashlib.sha256(envelope.payload).hexdigest(),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()}
                for s in envelope.signatures
            ],
        }
    )


@dataclass(frozen=True)
class EndorsementClaim:
    """What an endorsement's payload says: who endorses which logged attestation (by its log
    index and payload digest), at which assurance level, and within which scope."""

    endorser: str
    index: int
    payload_sha256: str
    assurance: str
    scope: str | None = None

    @classmethod
    def from_payload(cls, payload: bytes) -> EndorsementClaim:
        """Read an endorsement payload; VerificationError naming what is wrong."""
        claim = _json(payload, "the endorsement payload")
        attestation = claim.get("attestation")
        if not isinstance(attestation, dict):
            attestation = {}
        endorser, assurance, scope = (
            claim.get("endorser"),
            claim.get("assurance"),
            claim.get("scope"),
        )
        index, digest = attestation.get("logIndex"), attestation.get("payloadSha256")
        if not (
            isinstance(endorser, str)
            and isinstance(index, int)
            and not isinstance(index, bool)
            and index >= 0
            and isinstance(digest, str)
            and isinstance(assurance, str)
            and (scope is None or isinstance(scope, str))
        ):
            raise VerificationError(
                'an endorsement payload is {"endorser": id, "attestation": {"logIndex": '
                'integer, "payloadSha256": hex}, "assurance": level} and optionally "scope": text'
            )
        if assurance not in ENDORSEMENT_LEVELS:
            raise VerificationError(
                f"assurance {assurance!r} is none of {', '.join(ENDORSEMENT_LEVELS)}"
            )
        return cls(endorser, index, digest, assurance, scope)


def attestation_leaf(
    supplier: str,
    envelope: dsse.Envelope,
    previous_index: int | None,
    payload_sha256: str | None = None,
) -> bytes:
    """The log leaf of a signed feed: binds the envelope's payload and signatures.
    ``payload_sha256``: the payload's digest (hex), when the caller has computed it already."""
    digest = payload_sha256 or hashlib.sha256(envelope.payload).hexdigest()
    return canonical(
        {
            "kind": "attestation",
            "supplier": supplier,
            "payloadType": envelope.payload_type,
            "payloadSha256": digest,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()}
                for s in envelope.signatures
            ],
            "previousIndex": previous_index,
        }
    )


@dataclass(frozen=True)
class AdditionalTsa:
    """A further TSA of the log: its CA, and the stretch of the log whose checkpoints must
    each carry one of its tokens, by tree size: from ``required_from_size`` to
    ``required_until_size`` (None: on, while the log uses it). Without a requirement its
    tokens are checked when present.

    Why required: a token that the log may leave out protects against nothing. Why by tree
    size, not by time: a checkpoint's size is signed by the log key and cannot be moved back,
    where a time would come from the log's own TSA, which could date a checkpoint before the
    requirement and leave the further token out."""

    ca: x509.Certificate
    required_from_size: int | None = None
    required_until_size: int | None = None

    def required_at(self, size: int | None) -> bool:
        """Whether a checkpoint of tree ``size`` must carry a token of this TSA (a size not
        known, as of a checkpoint that did not verify: whenever there is a requirement)."""
        if self.required_from_size is None:
            return False
        if size is None:
            return True
        until = self.required_until_size
        return self.required_from_size <= size and (until is None or size <= until)

    def describe_requirement(self) -> str:
        """The stretch of the log this TSA must stamp, in words."""
        until = self.required_until_size
        return f"from tree size {self.required_from_size}" + (
            " on" if until is None else f" to {until}"
        )

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = dict(_ca_json(self.ca))
        if self.required_from_size is not None:
            document["requiredFromTreeSize"] = self.required_from_size
        if self.required_until_size is not None:
            document["requiredUntilTreeSize"] = self.required_until_size
        return document

    @classmethod
    def from_json(cls, data: Any, where: str) -> AdditionalTsa:
        if not isinstance(data, Mapping) or not isinstance(data.get("caCertificate"), str):
            raise TrustError(f"malformed trust root: {where} needs caCertificate (PEM)")
        try:
            ca = x509.load_pem_x509_certificate(data["caCertificate"].encode())
        except ValueError as exc:
            raise TrustError(f"malformed trust root: {where}.caCertificate: {exc}") from exc
        first, last = data.get("requiredFromTreeSize"), data.get("requiredUntilTreeSize")
        for name, value in (("requiredFromTreeSize", first), ("requiredUntilTreeSize", last)):
            if value is not None and (type(value) is not int or value < 1):
                raise TrustError(
                    f"malformed trust root: {where}.{name} must be a tree size (an integer "
                    f"from 1), got {value!r}"
                )
        if last is not None and (first is None or last < first):
            raise TrustError(
                f"malformed trust root: {where}.requiredUntilTreeSize needs a "
                "requiredFromTreeSize no larger than it"
            )
        return cls(ca, first, last)


@dataclass(frozen=True)
class TrustRoot:
    """What a verifier trusts: the log (origin and signed-note key) and the TSA's CA."""

    origin: str
    log_key: NoteVerifier
    tsa_ca: x509.Certificate
    log_key_valid_from: str
    log_key_valid_until: str | None = None
    # Further TSAs the registry also stamps its checkpoints with (optional).
    additional_tsas: tuple[AdditionalTsa, ...] = ()

    def check_log_key_time(self, when: datetime, what: str) -> None:
        """Raise unless the log key was valid at ``when``, the trusted time of ``what`` (a
        checkpoint the key signed), by the trust root's validity window."""
        start = _instant(self.log_key_valid_from, "log.validFrom")
        end = (
            None
            if self.log_key_valid_until is None
            else _instant(self.log_key_valid_until, "log.validUntil")
        )
        if when < start or (end is not None and when > end):
            raise VerificationError(
                f"{what} was timestamped at {when.isoformat()}, outside the log key's validity "
                f"in the trust root (from {self.log_key_valid_from} "
                f"until {self.log_key_valid_until or 'further notice'})"
            )

    def to_json(self) -> dict[str, Any]:
        from cryptography.hazmat.primitives.serialization import Encoding

        return {
            "mediaType": "application/vnd.sqm.trust-root.v0.1+json",
            "log": {
                "origin": self.origin,
                "verifierKey": self.log_key.encode(),
                "validFrom": self.log_key_valid_from,
                "validUntil": self.log_key_valid_until,
            },
            "tsa": {
                "caCertificate": self.tsa_ca.public_bytes(Encoding.PEM).decode(),
                "validFrom": self.tsa_ca.not_valid_before_utc.isoformat(),
                "validUntil": self.tsa_ca.not_valid_after_utc.isoformat(),
            },
            **(
                {"additionalTsas": [tsa.to_json() for tsa in self.additional_tsas]}
                if self.additional_tsas
                else {}
            ),
        }

    @classmethod
    def from_json(cls, data: Any) -> TrustRoot:
        try:
            log, tsa = data["log"], data["tsa"]
            verifier = NoteVerifier.parse(log["verifierKey"])
            ca = x509.load_pem_x509_certificate(tsa["caCertificate"].encode())
            listed = data.get("additionalTsas", [])
            if not isinstance(listed, list):
                raise TrustError("malformed trust root: additionalTsas must be a list")
            extra = tuple(
                AdditionalTsa.from_json(item, f"additionalTsas[{number}]")
                for number, item in enumerate(listed, 1)
            )
            root = cls(log["origin"], verifier, ca, log["validFrom"], log.get("validUntil"), extra)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise TrustError(f"malformed trust root: {exc}") from exc
        if not isinstance(root.origin, str):
            raise TrustError("malformed trust root: log.origin must be text")
        _instant(root.log_key_valid_from, "log.validFrom")
        if root.log_key_valid_until is not None:
            _instant(root.log_key_valid_until, "log.validUntil")
        return root


# RFC 3339 section 5.6 date-time (Python keeps a fraction to the microsecond, and reads up
# to nanoseconds, as Go's RFC3339Nano writes them): datetime.fromisoformat alone also reads
# ISO 8601's other forms (week dates, basic format).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def rfc3339(text: Any) -> datetime | None:
    """The time an RFC 3339 date-time names (with its offset, within Python's years), or None
    for anything else."""
    if not isinstance(text, str) or _RFC3339.fullmatch(text) is None:
        return None
    try:
        value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        value.astimezone(UTC)  # an offset that leaves year 1 to 9999 in UTC raises
    except (ValueError, OverflowError):
        return None
    return value


def _instant(text: Any, what: str) -> datetime:
    """An RFC 3339 time with its offset, as trust material writes times."""
    value = rfc3339(text)
    if value is None:
        raise TrustError(f"{what} must be an RFC 3339 time with an offset, got {text!r}")
    return value


def leaf_time(text: Any) -> datetime | None:
    """A time as a log leaf holds it: RFC 3339, or any ISO 8601 time with an offset that
    Python reads, as registries before 2026-12 accepted and logged for good
    (``2099-01-01 00:00:00+00:00``); None for anything else."""
    value = rfc3339(text)
    if value is not None:
        return value
    try:
        value = datetime.fromisoformat(text) if isinstance(text, str) else None
        if value is not None and value.tzinfo is not None:
            value.astimezone(UTC)  # an offset that leaves year 1 to 9999 in UTC raises
            return value
    except (ValueError, OverflowError):
        pass
    return None


def _ca_json(ca: x509.Certificate) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding

    return {
        "caCertificate": ca.public_bytes(Encoding.PEM).decode(),
        "validFrom": ca.not_valid_before_utc.isoformat(),
        "validUntil": ca.not_valid_after_utc.isoformat(),
    }


@dataclass(frozen=True)
class Included:
    """A leaf with its index and its inclusion proof to the bundle's checkpoint."""

    leaf: bytes
    index: int
    tree_size: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "leaf": base64.b64encode(self.leaf).decode(),
            "logIndex": self.index,
            "inclusionProof": {
                "treeSize": self.tree_size,
                "hashes": [base64.b64encode(h).decode() for h in self.hashes],
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> Included:
        try:
            proof = data["inclusionProof"]
            return cls(
                _b64(data["leaf"]),
                _int(data["logIndex"]),
                _int(proof["treeSize"]),
                tuple(_b64(h) for h in proof["hashes"]),
            )
        except (KeyError, TypeError) as exc:
            raise TrustError(f"{where}: missing or malformed field {exc}") from exc


@dataclass(frozen=True)
class LoggedAt:
    """The first checkpoint that held the attestation, its token, and the consistency proof
    from it to the bundle's checkpoint: when the attestation was logged, provably."""

    checkpoint: str
    timestamp: bytes
    consistency: tuple[bytes, ...]
    # Tokens over the same checkpoint from further TSAs, as the bundle's own.
    additional_timestamps: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "timestamp": base64.b64encode(self.timestamp).decode(),
            "consistency": [base64.b64encode(h).decode() for h in self.consistency],
        }
        if self.additional_timestamps:
            document["additionalTimestamps"] = [
                base64.b64encode(token).decode() for token in self.additional_timestamps
            ]
        return document

    @classmethod
    def from_json(cls, data: Any) -> LoggedAt:
        if not isinstance(data, Mapping) or not isinstance(data.get("checkpoint"), str):
            raise TrustError("bundle.loggedAt needs checkpoint text")
        hashes = data.get("consistency")
        if not isinstance(hashes, list):
            raise TrustError("bundle.loggedAt.consistency must be a list")
        additional = data.get("additionalTimestamps", [])
        if not isinstance(additional, list):
            raise TrustError("bundle.loggedAt.additionalTimestamps must be a list of base64 tokens")
        return cls(
            data["checkpoint"],
            _b64(data.get("timestamp")),
            tuple(_b64(h) for h in hashes),
            tuple(_b64(token) for token in additional),
        )


@dataclass(frozen=True)
class Bundle:
    """Everything needed to verify one attestation offline."""

    envelope: dsse.Envelope
    attestation: Included
    key: Included
    checkpoint: str
    timestamp: bytes
    logged_at: LoggedAt | None = None
    revocation: Included | None = None  # the key's revocation, when the log holds one
    # Tokens over the same checkpoint from further TSAs (a registry may use several).
    additional_timestamps: tuple[bytes, ...] = ()
    # An endorsement's bundle: the entry of the attestation it endorses, in the same tree.
    endorsed: Included | None = None
    # For a rotated-in key: the registrations from the identity's first key to the key that
    # authorised this one, oldest first, in the same tree.
    key_chain: tuple[Included, ...] = ()

    @property
    def endorsing(self) -> bool:
        """Whether this is an endorsement's bundle (by its envelope's payload type)."""
        return self.envelope.payload_type == ENDORSEMENT_TYPE

    def to_json(self) -> dict[str, Any]:
        document = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "envelope": self.envelope.to_json(),
            **self.attestation.to_json(),
            "checkpoint": self.checkpoint,
            "timestamp": base64.b64encode(self.timestamp).decode(),
            "key": self.key.to_json(),
        }
        if self.logged_at is not None:
            document["loggedAt"] = self.logged_at.to_json()
        if self.revocation is not None:
            document["keyRevocation"] = self.revocation.to_json()
        if self.additional_timestamps:
            document["additionalTimestamps"] = [
                base64.b64encode(token).decode() for token in self.additional_timestamps
            ]
        if self.endorsed is not None:
            document["endorsed"] = self.endorsed.to_json()
        if self.key_chain:
            document["keyChain"] = [link.to_json() for link in self.key_chain]
        return document

    @classmethod
    def from_json(cls, data: Any) -> Bundle:
        if not isinstance(data, Mapping) or data.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise TrustError(f"not an SQM bundle (mediaType must be {BUNDLE_MEDIA_TYPE})")
        if not isinstance(data.get("checkpoint"), str) or not isinstance(data.get("key"), Mapping):
            raise TrustError("a bundle needs checkpoint text and a key entry")
        logged = data.get("loggedAt")
        revocation = data.get("keyRevocation")
        if revocation is not None and not isinstance(revocation, Mapping):
            raise TrustError("bundle.keyRevocation must be an object")
        additional = data.get("additionalTimestamps", [])
        if not isinstance(additional, list):
            raise TrustError("bundle.additionalTimestamps must be a list of base64 tokens")
        endorsed = data.get("endorsed")
        if endorsed is not None and not isinstance(endorsed, Mapping):
            raise TrustError("bundle.endorsed must be an object")
        chain = data.get("keyChain", [])
        if not isinstance(chain, list) or not all(isinstance(link, Mapping) for link in chain):
            raise TrustError("bundle.keyChain must be a list of key registration entries")
        return cls(
            dsse.Envelope.from_json(data.get("envelope")),
            Included.from_json(data, "bundle"),
            Included.from_json(data["key"], "bundle.key"),
            data["checkpoint"],
            _b64(data.get("timestamp")),
            None if logged is None else LoggedAt.from_json(logged),
            None if revocation is None else Included.from_json(revocation, "bundle.keyRevocation"),
            tuple(_b64(token) for token in additional),
            None if endorsed is None else Included.from_json(endorsed, "bundle.endorsed"),
            tuple(
                Included.from_json(link, f"bundle.keyChain[{n}]") for n, link in enumerate(chain)
            ),
        )


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TrustError("expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise TrustError(f"invalid base64: {exc}") from exc


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TrustError("expected a non-negative integer")
    return value


@dataclass
class Step:
    """One verification step's outcome."""

    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    """Every step of a bundle verification; valid only when all passed."""

    steps: list[Step] = field(default_factory=list)
    feed: dict[str, Any] | None = None
    timestamp: datetime | None = None  # the trusted time of the bundle's checkpoint
    # When the attestation was logged, as step "key valid when logged" judged it: the latest
    # of its logging checkpoint's tokens' times (None when that step did not get so far).
    logged: datetime | None = None
    # An endorsement's bundle: its claim, once step "endorsement" read it.
    endorsement: EndorsementClaim | None = None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def run(self, name: str, check: Callable[[], str]) -> bool:
        try:
            detail = check()
        except TrustError as exc:
            self.steps.append(Step(name, False, str(exc)))
            return False
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            # Material of an unexpected shape that a check read without guarding: that step
            # fails, named, rather than the whole verification with a traceback.
            self.steps.append(
                Step(name, False, f"malformed material ({type(exc).__name__}: {exc})")
            )
            return False
        self.steps.append(Step(name, True, detail))
        return True


def verify(bundle: Bundle, root: TrustRoot) -> Report:
    """Verify every cryptographic step of a bundle offline: an attestation's, or an
    endorsement's (its envelope's payload type says which). The feed's own validity is a
    separate step the caller runs with the validator on ``report.feed``."""
    report = Report()
    state: dict[str, Any] = {}

    def checkpoint_step() -> str:
        checkpoint = open_note(bundle.checkpoint, root.log_key)
        if checkpoint.origin != root.origin:
            raise VerificationError(
                f"checkpoint origin {checkpoint.origin!r} is not {root.origin!r}"
            )
        state["checkpoint"] = checkpoint
        return f"signed by {root.log_key.name}, tree size {checkpoint.size}"

    def timestamp_step() -> str:
        info = timestamp.verify(bundle.timestamp, bundle.checkpoint.encode(), root.tsa_ca)
        root.check_log_key_time(info.gen_time, "the checkpoint")
        report.timestamp = info.gen_time
        return f"checkpoint timestamped at {info.gen_time.isoformat()} by {info.tsa_certificate.subject.rfc4514_string()}"

    def additional_timestamps_step() -> str:
        if not root.additional_tsas:
            return f"{len(bundle.additional_timestamps)} not checked: the trust root names no further TSA"
        checkpoint: Checkpoint | None = state.get("checkpoint")
        times, ignored = _further_times(
            root, bundle.checkpoint, bundle.additional_timestamps,
            None if checkpoint is None else checkpoint.size, "checkpoint",
        )  # fmt: skip
        told = (
            "checkpoint also timestamped at " + ", ".join(t.isoformat() for t in times)
            if times
            else "none required of a checkpoint of this size"
        )
        return told + (
            f"; {ignored} token(s) that no TSA the trust root lists issued, ignored"
            if ignored
            else ""
        )

    def inclusion(included: Included, what: str) -> Callable[[], str]:
        def step() -> str:
            checkpoint: Checkpoint | None = state.get("checkpoint")
            if checkpoint is None:
                raise VerificationError("no verified checkpoint to prove inclusion against")
            if included.tree_size != checkpoint.size:
                raise VerificationError(
                    f"the proof is for tree size {included.tree_size}, the checkpoint has {checkpoint.size}"
                )
            merkle.verify_inclusion(
                merkle.leaf_hash(included.leaf), included.index, included.tree_size,
                included.hashes, checkpoint.root,
            )  # fmt: skip
            return f"{what} is entry {included.index} of {checkpoint.size}"

        return step

    def key_step() -> str:
        leaf = _json(bundle.key.leaf, "key leaf")
        if leaf.get("kind") != "supplier-key":
            raise VerificationError("the key entry is not a supplier-key leaf")
        public = _b64(leaf.get("publicKey"))
        if leaf.get("keyId") != key_id(public):
            raise VerificationError("the key leaf's keyId is not the hash of its key")
        possession = _b64(leaf.get("proofOfPossession"))
        key = _ed25519(public)
        try:
            key.verify(possession, registration_message(str(leaf.get("supplier")), public))
        except Exception as exc:  # cryptography raises InvalidSignature
            raise VerificationError("the key's proof of possession does not verify") from exc
        state["key"], state["key_leaf"] = key, leaf
        organization = leaf.get("organization")
        holder = (
            f"{leaf.get('supplier')} ({organization['name']!r}, as {leaf.get('role')!r})"
            if isinstance(organization, dict) and isinstance(organization.get("name"), str)
            else leaf.get("supplier")
        )
        return f"key {leaf['keyId'][:16]}... registered for {holder}, valid from {leaf.get('validFrom')}"

    def key_chain_step() -> str:
        # A rotated-in key speaks for its supplier only if each key from the identity's first
        # one authorised the next: otherwise the log's operator could add keys at will.
        key_leaf = state.get("key_leaf")
        if key_leaf is None:
            raise VerificationError("needs a verified key")
        if not bundle.key_chain:
            raise VerificationError(
                f"the key was rotated in (authorised by key {str(key_leaf.get('authorizedBy'))[:16]}"
                "...), but the bundle carries no keyChain back to the identity's first key "
                "(bundles from registries before 2026-12-07 do not: fetch it again)"
            )
        supplier = key_leaf.get("supplier")
        first = _json(bundle.key_chain[0].leaf, "the key chain's first entry")
        if first.get("kind") != "supplier-key" or "authorizedBy" in first:
            raise VerificationError("the key chain does not start at the identity's first key")
        if first.get("supplier") != supplier:
            raise VerificationError(f"the key chain starts at a key of {first.get('supplier')}")
        _possessed(first)
        previous, previous_index = first, bundle.key_chain[0].index
        inclusion(bundle.key_chain[0], "the identity's first key")()
        for link in (*bundle.key_chain[1:], bundle.key):
            leaf = key_leaf if link is bundle.key else _json(link.leaf, "a key chain entry")
            if leaf.get("kind") != "supplier-key" or leaf.get("supplier") != supplier:
                raise VerificationError(f"entry {link.index} is not a key of {supplier}")
            if link.index <= previous_index:
                raise VerificationError(f"entry {link.index} comes before the key authorising it")
            if leaf.get("authorizedBy") != previous.get("keyId"):
                raise VerificationError(
                    f"entry {link.index} is not authorised by the key before it in the chain"
                )
            if link is not bundle.key:
                _possessed(leaf)
                inclusion(link, f"key chain entry {link.index}")()
            try:
                _ed25519(_b64(previous.get("publicKey"))).verify(
                    _b64(leaf.get("authorization")),
                    rotation_message(str(supplier), str(leaf.get("keyId"))),
                )
            except Exception as exc:  # cryptography raises InvalidSignature
                raise VerificationError(
                    f"the authorisation of the key of entry {link.index} does not verify with "
                    "the key before it"
                ) from exc
            previous, previous_index = leaf, link.index
        state["identity_leaf"] = first
        return (
            f"authorised through {len(bundle.key_chain)} earlier key(s) back to {supplier}'s "
            f"first key (entry {bundle.key_chain[0].index})"
        )

    def signature_step() -> str:
        key_leaf = state.get("key_leaf")
        if key_leaf is None:
            raise VerificationError("no verified supplier key")
        dsse.verify(bundle.envelope, {key_leaf["keyId"]: state["key"]})
        return f"DSSE signature by key {key_leaf['keyId'][:16]}..."

    def binding_step() -> str:
        leaf = _json(bundle.attestation.leaf, "attestation leaf")
        key_leaf = state.get("key_leaf") or {}
        expected = _json(
            attestation_leaf(str(leaf.get("supplier")), bundle.envelope, leaf.get("previousIndex")),
            "",
        )
        if leaf != expected:
            raise VerificationError(
                "the log leaf does not bind this envelope (payload or signatures differ)"
            )
        if key_leaf and leaf.get("supplier") != key_leaf.get("supplier"):
            raise VerificationError("the attestation and the key belong to different suppliers")
        return f"leaf binds payload sha256 {leaf['payloadSha256'][:16]}..."

    def statement_step() -> str:
        if bundle.envelope.payload_type != PAYLOAD_TYPE:
            raise VerificationError(
                f"payload type {bundle.envelope.payload_type!r} is not {PAYLOAD_TYPE}"
            )
        document = _json(bundle.envelope.payload, "payload")
        if (
            document.get("_type") != STATEMENT_TYPE
            or document.get("predicateType") != PREDICATE_TYPE
        ):
            raise VerificationError("the payload is not an in-toto Statement about an SQM feed")
        feed = document.get("predicate")
        if not isinstance(feed, dict):
            raise VerificationError("the statement has no feed predicate")
        digest = hashlib.sha256(canonical_text(bundle.envelope.payload, "predicate")).hexdigest()
        subjects = document.get("subject")
        named = [
            s
            for s in (subjects if isinstance(subjects, list) else [])
            if isinstance(s, dict)
            and isinstance(s.get("digest"), dict)
            and s["digest"].get("sha256") == digest
        ]
        if not named:
            raise VerificationError("the statement's subject digest does not match its feed")
        report.feed = feed
        return f"in-toto statement about feed {named[0].get('name')}"

    def signer_step() -> str:
        # A key speaks only for its own supplier: a feed claiming another is not its to sign.
        key_leaf, feed = state.get("key_leaf"), report.feed
        if key_leaf is None or feed is None:
            raise VerificationError("needs a verified key and statement")
        try:
            named = supplier_identity(feed["header"]["supplier"])
        except (KeyError, TypeError, TrustError) as exc:
            raise VerificationError(f"the feed names no supplier identifier ({exc})") from None
        if named != key_leaf.get("supplier"):
            raise VerificationError(
                f"the feed names {named}, but the key is registered for {key_leaf.get('supplier')}"
            )
        attested = _json(bundle.attestation.leaf, "attestation leaf").get("supplier")
        if attested != named:
            raise VerificationError(f"the log entry is for {attested}, the feed names {named}")
        return f"the feed's supplier {named} holds the signing key"

    def endorsement_step() -> str:
        claim = EndorsementClaim.from_payload(bundle.envelope.payload)
        report.endorsement = claim
        scope = "" if claim.scope is None else f", scope {claim.scope!r}"
        return (
            f"{claim.endorser} endorses entry {claim.index} (payload sha256 "
            f"{claim.payload_sha256[:16]}...) as {claim.assurance}{scope}"
        )

    def endorsement_binding_step() -> str:
        claim = report.endorsement
        if claim is None:
            raise VerificationError("needs a readable endorsement")
        leaf = _json(bundle.attestation.leaf, "endorsement leaf")
        expected = endorsement_leaf(
            claim.endorser, claim.index, claim.payload_sha256, claim.assurance, bundle.envelope
        )
        if leaf != _json(expected, ""):
            raise VerificationError(
                "the log leaf does not bind this endorsement (its claim or signatures differ)"
            )
        return f"leaf binds endorsement sha256 {leaf['envelopeSha256'][:16]}..."

    def endorsed_step() -> str:
        claim, endorsed = report.endorsement, bundle.endorsed
        if claim is None:
            raise VerificationError("needs a readable endorsement")
        if endorsed is None:
            raise VerificationError("the bundle does not carry the endorsed attestation's entry")
        if endorsed.index != claim.index:
            raise VerificationError(
                f"the bundle carries entry {endorsed.index}, the endorsement names {claim.index}"
            )
        if not claim.index < bundle.attestation.index:
            raise VerificationError("the endorsement was logged before what it endorses")
        leaf = _json(endorsed.leaf, "endorsed attestation leaf")
        if leaf.get("kind") != "attestation" or leaf.get("payloadSha256") != claim.payload_sha256:
            raise VerificationError(
                f"entry {claim.index} is not the attestation the endorsement names (its kind "
                "or payload digest differs)"
            )
        if leaf.get("supplier") == claim.endorser:
            raise VerificationError(
                f"entry {claim.index} is {claim.endorser}'s own attestation: its endorsement "
                "of itself raises no assurance"
            )
        inclusion(endorsed, "the endorsed attestation")()
        return (
            f"entry {claim.index} is {leaf.get('supplier')}'s attestation of that payload, "
            f"in the same tree"
        )

    def endorser_step() -> str:
        # A key speaks only for its own holder, and only a registered endorser's raises the
        # assurance of another's claim.
        key_leaf, claim = state.get("key_leaf"), report.endorsement
        if key_leaf is None or claim is None:
            raise VerificationError("needs a verified key and endorsement")
        if claim.endorser != key_leaf.get("supplier"):
            raise VerificationError(
                f"the endorsement names {claim.endorser}, but the key is registered for "
                f"{key_leaf.get('supplier')}"
            )
        # The identity's first key records the role; a later key's leaf carries none the
        # authorisation signs, so the first key's word stands.
        identity = state.get("identity_leaf") or key_leaf
        role = identity.get("role")
        if role is None:
            return (
                f"{claim.endorser} holds the signing key (its identity's first key records no "
                f"role: a registry before 2026-12)"
            )
        if role != "endorser":
            raise VerificationError(
                f"{claim.endorser} is registered as {role!r}, not as an endorser"
            )
        return f"{claim.endorser} holds the signing key, registered as an endorser"

    entry = "endorsement" if bundle.endorsing else "attestation"

    def key_validity_step() -> str:
        key_leaf = state.get("key_leaf")
        checkpoint: Checkpoint | None = state.get("checkpoint")
        if key_leaf is None or checkpoint is None:
            raise VerificationError("needs a verified key and checkpoint")
        logged = bundle.logged_at
        if logged is None:
            raise VerificationError(f"the bundle does not say when the {entry} was logged")
        first = open_note(logged.checkpoint, root.log_key)
        if not bundle.attestation.index < first.size <= checkpoint.size:
            raise VerificationError(f"the logging checkpoint does not hold the {entry}")
        merkle.verify_consistency(
            first.size, checkpoint.size, logged.consistency, first.root, checkpoint.root
        )
        logged_time = timestamp.verify(
            logged.timestamp, logged.checkpoint.encode(), root.tsa_ca
        ).gen_time
        root.check_log_key_time(logged_time, "the logging checkpoint")
        further, _ = _further_times(
            root, logged.checkpoint, logged.additional_timestamps, first.size, "logging checkpoint"
        )
        _within_ended_stretches(root, bundle.attestation.index, first.size)
        # The latest of the TSAs' times: the entry is judged logged when every trusted TSA
        # says the checkpoint existed, so that no one TSA can date it earlier alone.
        logged_time = max([logged_time, *further])
        report.logged = logged_time
        if bundle.revocation is None:
            return f"logged at {logged_time.isoformat()}; no revocation of the key in the log"
        inclusion(bundle.revocation, "the key revocation")()
        revocation = _json(bundle.revocation.leaf, "revocation leaf")
        if revocation.get("kind") != "key-revocation" or revocation.get("keyId") != key_leaf.get(
            "keyId"
        ):
            raise VerificationError("the revocation entry is not about this key")
        revoked_at = leaf_time(revocation.get("revokedAt"))
        if revoked_at is None:
            raise TrustError(
                f"the revocation's revokedAt must be a time with an offset, got "
                f"{revocation.get('revokedAt')!r}"
            )
        if revoked_at <= logged_time:
            raise VerificationError(
                f"the key was revoked from {revoked_at.isoformat()}, before the {entry} was logged at {logged_time.isoformat()}"
            )
        return f"logged at {logged_time.isoformat()}, before the key's revocation from {revoked_at.isoformat()}"

    report.run("checkpoint signature", checkpoint_step)
    report.run("timestamp token", timestamp_step)
    if bundle.additional_timestamps or any(t.required_from_size for t in root.additional_tsas):
        report.run("additional timestamps", additional_timestamps_step)
    report.run("key registration included", inclusion(bundle.key, "the key registration"))
    report.run("key proof of possession", key_step)
    if bundle.key_chain or _rotated_in(bundle.key.leaf):
        report.run("key authorised by its supplier", key_chain_step)
    report.run("envelope signature", signature_step)
    if bundle.endorsing:
        report.run("endorsement", endorsement_step)
        report.run("leaf binds endorsement", endorsement_binding_step)
        report.run("endorsement included", inclusion(bundle.attestation, "the endorsement"))
        report.run("endorsed attestation included", endorsed_step)
        report.run("endorsement names the signer", endorser_step)
    else:
        report.run("leaf binds envelope", binding_step)
        report.run("attestation included", inclusion(bundle.attestation, "the attestation"))
        report.run("statement", statement_step)
        report.run("feed names the signer", signer_step)
    report.run("key valid when logged", key_validity_step)
    return report


def _further_times(
    root: TrustRoot, note: str, tokens: Sequence[bytes], size: int | None, what: str
) -> tuple[list[datetime], int]:
    """The times of ``tokens`` (further TSAs' tokens over the checkpoint ``note`` of tree
    ``size``) that a TSA the trust root lists issued, and how many tokens none of them did
    (ignored: a TSA the log used once, or whose CA changed, and the trust root no longer
    lists, judges nothing). VerificationError when the checkpoint lacks a valid token of a
    TSA that the trust root requires of a checkpoint of its size. A trust root that lists no
    further TSA checks none."""
    if not root.additional_tsas:
        return [], 0
    times: list[datetime] = []
    issued: set[bytes] = set()  # the CAs (DER) whose TSA stamped the checkpoint
    ignored = 0
    cas = {tsa.ca.public_bytes(Encoding.DER): tsa.ca for tsa in root.additional_tsas}
    for token in tokens:
        for der, ca in cas.items():
            try:
                times.append(timestamp.verify(token, note.encode(), ca).gen_time)
            except TrustError:
                continue
            issued.add(der)
            break
        else:
            ignored += 1
    for tsa in root.additional_tsas:
        if tsa.required_at(size) and tsa.ca.public_bytes(Encoding.DER) not in issued:
            raise VerificationError(
                f"the {what} (tree size {size}) carries no valid token of the TSA "
                f"{tsa.ca.subject.rfc4514_string()!r}, which the trust root requires of every "
                f"checkpoint {tsa.describe_requirement()}: a bundle without it may have been "
                "dated by the log's own TSA alone"
            )
    return times, ignored


def _within_ended_stretches(root: TrustRoot, index: int, logged_size: int) -> None:
    """VerificationError when the logging checkpoint cited for entry ``index`` (of tree size
    ``logged_size``) lies past the end of a further TSA's stretch that the entry was logged
    in or before. Why: a log could otherwise cite a later checkpoint, outside every stretch,
    and date it with its own TSA alone; the first checkpoint that held the entry is no larger
    than the end of any stretch that began before the entry's index plus one."""
    for tsa in root.additional_tsas:
        until = tsa.required_until_size
        if until is not None and index + 1 <= until < logged_size:
            raise VerificationError(
                f"the logging checkpoint (tree size {logged_size}) lies past the stretch of the "
                f"TSA {tsa.ca.subject.rfc4514_string()!r} ({tsa.describe_requirement()}), "
                f"within which entry {index} was logged: the first checkpoint that held it is "
                f"of size {until} at most"
            )


def _rotated_in(leaf: bytes) -> bool:
    """Whether a key leaf names a key that authorised it (False for one that does not read)."""
    try:
        return "authorizedBy" in _json(leaf, "key leaf")
    except TrustError:
        return False


def _possessed(leaf: Mapping[str, Any]) -> None:
    """Raise unless a key leaf's keyId names its public key and its proof of possession
    verifies (the key signed its registration for the supplier)."""
    public = _b64(leaf.get("publicKey"))
    if leaf.get("keyId") != key_id(public):
        raise VerificationError(
            f"key leaf {str(leaf.get('keyId'))[:16]}...: its keyId is not the hash of its key"
        )
    try:
        _ed25519(public).verify(
            _b64(leaf.get("proofOfPossession")),
            registration_message(str(leaf.get("supplier")), public),
        )
    except Exception as exc:  # cryptography raises InvalidSignature
        raise VerificationError(
            f"the proof of possession of key {str(leaf.get('keyId'))[:16]}... does not verify"
        ) from exc


def _json(raw: bytes, what: str) -> dict[str, Any]:
    import json

    try:
        # A member named twice would let two readers of the same signed bytes differ.
        value = json.loads(raw, object_pairs_hook=unique_members)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TrustError(f"{what} is not JSON: {json_error(exc)}") from exc
    except RecursionError:
        raise TrustError(f"{what} nests arrays or objects too deeply") from None
    if not isinstance(value, dict):
        raise TrustError(f"{what} is not a JSON object")
    return value


def _ed25519(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise TrustError(f"not an Ed25519 public key: {exc}") from exc
