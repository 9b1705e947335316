"""Supplier registration and attestation ingest: the registry's write path, without HTTP.

Every accepted write is a log entry: a supplier's key registration, then its attestations.
An attestation is accepted only when its DSSE signature verifies with a registered, unrevoked
key of the supplier the feed names, the feed passes the validator (the same code suppliers
run), its issue time is recent, and its sequence number is new for that supplier.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import BigInteger, and_, bindparam, func, literal_column, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from sqm.registry.db import (
    attestations,
    endorsements,
    envelope_of,
    log_entries,
    log_pending,
    stored_envelope,
    supplier_keys,
    suppliers,
    utc,
)
from sqm.registry.driver import Prepared
from sqm.registry.errors import DamagedStoreError, RegistryError
from sqm.registry.group_commit import GroupCommit, Write
from sqm.registry.indexer import Indexer
from sqm.registry.log import EntryRow, Integration, TransparencyLog, UnmetConditionError
from sqm.registry.timestampers import TimestampUnavailableError
from sqm.trust import TrustError, bundle, dsse
from sqm.trust.canonical import (
    StrictJSONError,
    canonical_text,
    json_error,
    loads_with_canonical,
    strict_loads,
)
from sqm.validator import Severity, check_organization, validate

CLOCK_SKEW = timedelta(minutes=5)
logger = logging.getLogger(__name__)

# The attestation path's statements, built once (see registry/log.py).
_SEEN = Prepared(
    select(attestations.c.seq).where(attestations.c.payload_sha256 == bindparam("digest"))
)
_KEY_COLUMNS = (
    supplier_keys.c.key_id,
    supplier_keys.c.public_key,
    supplier_keys.c.revoked_at,
    supplier_keys.c.seq,
    supplier_keys.c.revocation_seq,
)
# All of a supplier's keys (a handful, over its rotations), filtered here: a statement with an
# IN list of the envelope's key ids is compiled anew for each call.
_SUPPLIER_KEYS = Prepared(
    select(*_KEY_COLUMNS).where(supplier_keys.c.supplier == bindparam("supplier"))
)
# An attestation's reads before its write in one statement: whether its envelope is logged
# already (in every row), and its supplier's keys (none: one row of NULLs). One round trip
# and one statement's Python in psycopg rather than two: together they were a twentieth of a
# worker's time under load.
_ONE_ROW = select(literal_column("1").label("one")).subquery("one_row")
_SEEN_AND_KEYS = Prepared(
    select(
        select(attestations.c.seq)
        .where(attestations.c.payload_sha256 == bindparam("digest"))
        .scalar_subquery()
        .label("seen"),
        *_KEY_COLUMNS,
    ).select_from(
        _ONE_ROW.outerjoin(supplier_keys, supplier_keys.c.supplier == bindparam("supplier"))
    )
)
# What an attestation's request read is still so where it is written, under the log's write
# lock: the key that verified its signature is as it was read (a key is revoked once, and its
# other columns never change), so that a key revoked by another worker meanwhile signs nothing
# new; and no attestation holds its payload yet, so that an exact resubmission stores nothing
# (and refuses no other write of its batch, as the unique digest would).
_AS_READ = and_(
    select(supplier_keys.c.key_id)
    .where(
        supplier_keys.c.key_id == bindparam("signing_key"),
        supplier_keys.c.revocation_seq.is_not_distinct_from(
            bindparam("signing_key_revocation", type_=BigInteger)
        ),
    )
    .exists(),
    ~select(attestations.c.seq)
    .where(attestations.c.payload_sha256 == bindparam("logged_digest"))
    .exists(),
)
# Stored with its log entry, whose number it takes (the write below).
_NEW_ATTESTATION = EntryRow(attestations, condition=_AS_READ)
# Suppliers whose keys a worker keeps (see Ingest._keys): more than a registry's busy suppliers,
# small (a few hundred bytes each).
KEY_CACHE_SUPPLIERS = 10_000
_LEAP_SECOND = re.compile(r"[Tt][0-9]{2}:[0-9]{2}:60")

# Payload digests of envelopes a worker saw logged, for answering retries (Ingest._seen):
# half a minute of the benchmark's fastest ingest, where retries come within seconds; a few
# hundred bytes each.
LOGGED_DIGESTS = 10_000
# How long a key must stay unrevoked for the registry to log what it signs: offline
# verification judges a key at the timestamp of the checkpoint that first logs the entry, which
# comes within about a second (longer only while a TSA is down).
# An identity's current keys, and the keys in a line of rotations from its first: a rotated-in
# key's bundle carries that line, so the bound keeps bundles and their reads small (a key a year
# for a century). Revoked keys do not count against the first, so that a thief's keys, once
# revoked, cannot lock the identity out.
MAX_KEYS_PER_IDENTITY = 100
REVOCATION_MARGIN = timedelta(minutes=1)
# Longer than any scheme:code the standard's identifiers make; bounds what a request may name.
MAX_IDENTIFIER = 300
_HEX = re.compile("[0-9a-f]+")
_UNSAFE_IN_PATHS = frozenset("/?#% \t\n\r")
_ENDORSEMENT_MEMBERS = frozenset({"endorser", "attestation", "assurance", "scope"})
MAX_URL = 2000  # characters of an organisation's URL (browsers' and CDNs' common limit)
MAX_IDENTIFIERS = 20  # an organisation's registered identifiers: LEI, DUNS, VAT, ... once each
MAX_SCOPE_CHARS = 2000  # what an auditor says it checked: a sentence or a paragraph
K = TypeVar("K")
V = TypeVar("V")


@dataclass
class RejectionError(RegistryError):
    """A request the registry refuses: HTTP status, stable code, message, optional details."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise RejectionError(400, "malformed_request", f"{what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise RejectionError(
            400, "malformed_request", f"{what} is not valid base64: {exc}"
        ) from exc


def _identifier(value: Any, what: str) -> str:
    """A supplier's or endorser's id as a client names it: text that a database can hold.
    (No unpaired surrogate reaches here: bodies and payloads are read as I-JSON, and Werkzeug
    decodes paths with replacement characters.)"""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_IDENTIFIER or "\x00" in value:
        raise RejectionError(
            400,
            "malformed_request",
            f"{what} must be a registered id (scheme:code), 1 to {MAX_IDENTIFIER} characters of "
            "text without NUL characters",
        )
    return value


def is_key_id(value: Any) -> bool:
    """Whether ``value`` has the form of a key id (:func:`bundle.key_id`)."""
    return isinstance(value, str) and len(value) == 64 and _HEX.fullmatch(value) is not None


def supplier_id(organization: Any) -> str:
    """``scheme:code`` of an organisation's first registered identifier."""
    try:
        return bundle.supplier_identity(organization)
    except TrustError as exc:
        raise RejectionError(422, "missing_identifier", str(exc)) from None


def _signing_keys(connection: Connection, envelope: dsse.Envelope, owner: str) -> Sequence[Any]:
    """The registered keys of ``owner`` among those that signed ``envelope`` (``_SUPPLIER_KEYS``
    rows), for :meth:`Ingest._verify_signature`."""
    wanted = {signature.keyid for signature in envelope.signatures}
    return [row for row in _SUPPLIER_KEYS.rows(connection, {"supplier": owner}) if row[0] in wanted]


class _SigningKey(NamedTuple):
    """The key that signed an envelope, and the sequence numbers of its log entries."""

    key_id: str
    seq: int
    revocation_seq: int | None


class _Recent(Generic[K, V]):
    """A bounded map, least recently used dropped beyond ``size``; safe across threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def forget(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class Ingest:
    """The write path over a log; ``now`` is injectable for tests."""

    def __init__(
        self,
        log: TransparencyLog,
        issued_window: timedelta = timedelta(hours=72),
        now: Any = lambda: datetime.now(UTC),
        indexer: Indexer | None = None,
    ) -> None:
        self.log = log
        self.issued_window = issued_window
        self.now = now
        self.indexer = indexer
        self._writer = GroupCommit(log)
        # The registered keys of recently attesting suppliers, as read (_KEY_COLUMNS rows).
        # Why: reading a supplier's keys before each attestation was a statement and a round
        # trip of every submission (with the check for a logged envelope, a tenth of a
        # worker's CPU). A kept key is safe to verify with: a key's row changes only when it
        # is revoked, and the attestation's write stores nothing unless the key's row is
        # still as it was read (_AS_READ); a key registered since is not kept, so a
        # signature by it reads the supplier's keys afresh.
        self._keys: _Recent[str, list[tuple[Any, ...]]] = _Recent(KEY_CACHE_SUPPLIERS)
        # The entry numbers of envelopes this worker saw logged, by payload digest. Why: with
        # kept keys nothing is read before the write, so a client's retry of a logged
        # envelope was verified, validated and written (its write refused) before it was
        # found logged, costing more than a new attestation. A logged envelope stays logged,
        # and is answered with its bundle whatever its checks say now: what is kept is never
        # stale.
        self._seen: _Recent[str, int] = _Recent(LOGGED_DIGESTS)

    def _integrate(self) -> None:
        """Integrate what waits into a signed checkpoint (entries stored during a TSA outage)."""
        try:
            self.log.integrate()
        except TimestampUnavailableError as exc:
            raise _unavailable(exc) from exc
        self._catch_up_index()

    def _logged(self, write: Write, pipelinable: bool = False) -> tuple[int, Integration | None]:
        """Run ``write``, which sequences one entry and stores its rows, and integrate it, in
        one transaction as the log's single writer (shared with the writes of other threads
        that arrive meanwhile: :class:`GroupCommit`): one commit makes the entry durable and
        logged. (seq, the integration); when a TSA fails, the entry commits unlogged and this
        raises 503: the background sweep or the next write logs it. ``pipelinable``: see
        :meth:`GroupCommit.run`."""
        try:
            seq, integration = self._writer.run(write, pipelinable)
        except TimestampUnavailableError as exc:
            raise _unavailable(exc) from exc
        self._catch_up_index()
        return seq, integration

    def _catch_up_index(self) -> None:
        if self.indexer is not None:
            # The entry is logged whatever happens to the index, which the background sweep
            # and `sqm registry reindex` bring up to date from the log.
            try:
                self.indexer.catch_up()
            except (RegistryError, SQLAlchemyError):
                logger.exception("indexing after integration failed; the sweep retries")

    # --- suppliers ------------------------------------------------------------------------------

    def _possessed_key(self, identity: str, body: dict[str, Any]) -> tuple[bytes, bytes, str]:
        """(public key, proof of possession, key id), the proof checked; the key must be new."""
        public = _b64(body.get("publicKey"), "publicKey")
        possession = _b64(body.get("proofOfPossession"), "proofOfPossession")
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(
                possession, bundle.registration_message(identity, public)
            )
        except ValueError:
            raise RejectionError(
                422, "invalid_key", "publicKey is not a 32-byte Ed25519 key"
            ) from None
        except InvalidSignature:
            raise RejectionError(
                422,
                "invalid_proof_of_possession",
                "proofOfPossession must be the key's signature over the registration message",
            ) from None
        key_id = bundle.key_id(public)
        self._refuse_registered(identity, key_id)
        return public, possession, key_id

    def _refuse_registered(self, identity: str, key_id: str) -> None:
        """Raise 409 ``key_already_registered`` when the key is registered: for ``identity``
        (whose proof of possession the caller checked) with the registration's entry, so that
        a client that lost the answer, resent after a 503, or lost a race with its own
        request gets it."""
        with self.log.engine.connect() as connection:
            known = connection.execute(
                select(supplier_keys.c.supplier, supplier_keys.c.seq).where(
                    supplier_keys.c.key_id == key_id
                )
            ).first()
        if known is None:
            return
        if known[0] != identity:
            raise RejectionError(
                409, "key_already_registered", f"key {key_id} is registered for {known[0]}"
            )
        entry = self._known_entry(int(known[1]))
        raise RejectionError(
            409,
            "key_already_registered",
            f"key {key_id} is registered for {identity} already, as log entry {entry['logIndex']}",
            {"supplier": identity, "keyId": key_id, **entry},
        )

    def _logged_key(
        self, write: Write, identity: str, key_id: str
    ) -> tuple[int, Integration | None]:
        """:meth:`_logged` for a write that registers ``key_id`` for ``identity``: refused
        because a concurrent request registered the identity or the key meanwhile, it answers
        as for a resubmission when that request registered this very key."""
        try:
            return self._logged(write)
        except RejectionError as refusal:
            if refusal.code in ("supplier_exists", "key_already_registered"):
                self._refuse_registered(identity, key_id)
            raise

    def _known_entry(self, seq: int) -> dict[str, Any]:
        """The logged entry ``seq`` with its inclusion proof, as a refusal of its resubmission
        names it. Only an entry still waiting (stored during a TSA outage) is integrated
        first, which answers 503 while the TSA still fails: an entry in the tree is proven
        without a TSA, whatever else waits."""
        try:
            return self._included(seq).to_json()
        except RejectionError as refusal:
            if refusal.code != "not_yet_integrated":
                raise
        self._integrate()
        return self._included(seq).to_json()

    def _log_key(
        self,
        connection: Connection,
        identity: str,
        leaf: bytes,
        key_id: str,
        public: bytes,
        valid_from: datetime,
    ) -> int:
        """Log a key's leaf and store its row, valid from the time its leaf names."""
        seq = self.log.sequence(leaf, connection=connection)
        try:
            connection.execute(
                supplier_keys.insert().values(
                    key_id=key_id,
                    supplier=identity,
                    public_key=public,
                    valid_from=utc(valid_from),
                    seq=seq,
                )
            )
        except IntegrityError:
            # Another request registered this key between the check and this write.
            raise RejectionError(
                409, "key_already_registered", f"key {key_id} is already registered"
            ) from None
        return seq

    def register_supplier(self, body: Any, role: str = "supplier") -> dict[str, Any]:
        """Register a new supplier identity with its first Ed25519 key and proof of possession.
        Further keys of a known supplier need the authorisation of a current key (:meth:`add_key`)."""
        if not isinstance(body, dict):
            raise RejectionError(400, "malformed_request", "the body must be a JSON object")
        organization = body.get("supplier")
        if not isinstance(organization, dict) or not isinstance(organization.get("name"), str):
            raise RejectionError(
                422, "invalid_supplier", "supplier must be an organisation with a name"
            )
        # The standard's own checks of an organisation, as a feed's supplier gets them.
        findings = check_organization(organization, "/supplier")
        if any(f.severity is Severity.ERROR for f in findings):
            raise RejectionError(
                422,
                "invalid_supplier",
                f"the organisation has {sum(f.severity is Severity.ERROR for f in findings)} "
                "errors, as the validator finds them in a feed's header.supplier",
                {"findings": [f.to_dict() for f in findings]},
            )
        name, identifiers = organization["name"], organization.get("identifiers")
        if not name.strip() or not identifiers or any(not i.get("code") for i in identifiers):
            raise RejectionError(
                422,
                "invalid_supplier",
                "supplier needs a name and at least one registered identifier, each with a "
                "code; the first names it in the registry (scheme:code)",
            )
        if len(name) > MAX_IDENTIFIER or not name.isprintable():
            raise RejectionError(
                422,
                "invalid_supplier",
                f"supplier.name must be at most {MAX_IDENTIFIER} printable characters (no "
                "control or bidirectional formatting characters)",
            )
        pairs = [(i.get("scheme"), i.get("code")) for i in identifiers]
        if len(pairs) > MAX_IDENTIFIERS or len(set(pairs)) != len(pairs):
            raise RejectionError(
                422,
                "invalid_supplier",
                f"supplier.identifiers must be at most {MAX_IDENTIFIERS}, each once",
            )
        identity = _identifier(supplier_id(organization), "the supplier's first identifier")
        if (
            any(c in identity for c in _UNSAFE_IN_PATHS)
            or not identity.isprintable()
            or not unicodedata.is_normalized("NFC", identity)
        ):
            raise RejectionError(
                422,
                "invalid_supplier",
                f"the first identifier {identity[:80]!r} names the supplier in URLs: it must be "
                "NFC-normalised text without white space, control characters or any of / ? # %",
            )
        # The organisation is logged in its key's leaf and travels in every bundle of the key.
        parts = [str(i.get(part) or "") for i in identifiers for part in ("scheme", "code")]
        if (
            max(map(len, parts)) > MAX_IDENTIFIER
            or len(str(organization.get("url") or "")) > MAX_URL
        ):
            raise RejectionError(
                422,
                "invalid_supplier",
                f"an identifier's scheme and code may have at most {MAX_IDENTIFIER} characters "
                f"each, and supplier.url at most {MAX_URL}",
            )
        public, possession, key_id = self._possessed_key(identity, body)
        with self.log.engine.connect() as connection:
            exists = connection.execute(
                select(suppliers.c.id).where(suppliers.c.id == identity)
            ).scalar()
        if exists is not None:
            self._refuse_registered(identity, key_id)  # registered meanwhile, with this key
            raise RejectionError(
                409,
                "supplier_exists",
                f"{identity} is registered; add a key with POST /api/v1/suppliers/{identity}/keys, "
                "authorised by one of its current keys",
            )
        valid_from = self.now()
        try:
            leaf = bundle.key_leaf(
                identity, public, valid_from.isoformat(), possession,
                organization=organization, role=role,
            )  # fmt: skip
        except TrustError as exc:
            raise RejectionError(
                422,
                "invalid_supplier",
                f"the organisation is logged as canonical JSON (RFC 8785), which it has no "
                f"form in: {exc}",
            ) from None

        # The identity, its key and the key's log entry commit together or not at all.
        def write(connection: Connection) -> int:
            try:
                connection.execute(
                    suppliers.insert().values(
                        id=identity,
                        name=organization["name"],
                        identity=json.dumps(organization),
                        verification="unverified",
                        role=role,
                    )
                )
            except IntegrityError:
                raise RejectionError(
                    409, "supplier_exists", f"{identity} was registered meanwhile"
                ) from None
            return self._log_key(connection, identity, leaf, key_id, public, valid_from)

        seq, integration = self._logged_key(write, identity, key_id)
        return {
            "supplier": identity,
            "keyId": key_id,
            "verification": "unverified",
            **self._included(seq, integration).to_json(),
        }

    def add_key(self, identity: str, body: Any) -> dict[str, Any]:
        """Rotate in a new key for a known supplier, authorised by one of its current keys."""
        identity = _identifier(identity, "the supplier id in the path")
        if not isinstance(body, dict) or not isinstance(body.get("authorization"), dict):
            raise RejectionError(
                400,
                "malformed_request",
                "send publicKey, proofOfPossession and authorization {keyId, signature}",
            )
        public, possession, key_id = self._possessed_key(identity, body)
        authorizer = body["authorization"].get("keyId")
        if not is_key_id(authorizer):
            raise RejectionError(
                400,
                "malformed_request",
                "authorization.keyId must be the id of a current key: 64 lowercase hex digits, "
                "the SHA-256 of its raw public key",
            )
        signature = _b64(body["authorization"].get("signature"), "authorization.signature")
        with self.log.engine.connect() as connection:
            row = connection.execute(
                select(
                    supplier_keys.c.public_key, supplier_keys.c.revoked_at, supplier_keys.c.seq
                ).where(supplier_keys.c.key_id == authorizer, supplier_keys.c.supplier == identity)
            ).first()
            known = (
                row is not None
                or connection.execute(
                    select(suppliers.c.id).where(suppliers.c.id == identity)
                ).scalar()
                is not None
            )
        if not known:
            raise RejectionError(
                404,
                "no_such_supplier",
                f"no supplier {identity!r}: register it with POST /api/v1/suppliers",
            )
        if row is None or (row[1] is not None and _aware(row[1]) <= self.now()):
            raise RejectionError(
                403, "unknown_key", f"{authorizer!r} is not a current key of {identity}"
            )
        try:
            Ed25519PublicKey.from_public_bytes(bytes(row[0])).verify(
                signature, bundle.rotation_message(identity, key_id)
            )
        except InvalidSignature:
            raise RejectionError(
                403, "signature_invalid", "the authorisation does not verify"
            ) from None
        valid_from, authorizer_seq = self.now(), int(row[2])
        leaf = bundle.key_leaf(
            identity, public, valid_from.isoformat(), possession, authorizer, signature
        )

        def write(connection: Connection) -> int:
            # Under the log's write lock: a revocation of the authoriser committed since the
            # check above would otherwise miss this key in its cascade.
            revoked = connection.execute(
                select(supplier_keys.c.revoked_at).where(supplier_keys.c.key_id == authorizer)
            ).scalar()
            if revoked is not None and _aware(revoked) <= valid_from:
                raise RejectionError(
                    403,
                    "unknown_key",
                    f"{authorizer!r} was revoked meanwhile: it authorises nothing",
                )
            current = connection.execute(
                select(func.count())
                .select_from(supplier_keys)
                .where(
                    supplier_keys.c.supplier == identity,
                    (supplier_keys.c.revoked_at.is_(None))
                    | (supplier_keys.c.revoked_at > utc(valid_from)),
                )
            ).scalar_one()
            if current >= MAX_KEYS_PER_IDENTITY:
                raise RejectionError(
                    409,
                    "too_many_keys",
                    f"{identity} has {current} current keys, the most an identity may have: "
                    "revoke one first",
                )
            depth = len(self._key_chain(authorizer_seq, connection)) + 1
            if depth >= MAX_KEYS_PER_IDENTITY:
                raise RejectionError(
                    409,
                    "too_many_keys",
                    f"the new key's bundles would carry a chain of {depth} keys back to "
                    f"{identity}'s first key, at most {MAX_KEYS_PER_IDENTITY - 1} are carried: "
                    "rotate from a key nearer the first",
                )
            return self._log_key(connection, identity, leaf, key_id, public, valid_from)

        seq, integration = self._logged_key(write, identity, key_id)
        return {
            "supplier": identity,
            "keyId": key_id,
            "authorizedBy": authorizer,
            **self._included(seq, integration).to_json(),
        }

    # --- attestations ---------------------------------------------------------------------------

    def attest(self, body: Any) -> tuple[int, dict[str, Any]]:
        """Accept a DSSE envelope: (201, bundle) for a new entry, (409, bundle) for an exact
        resubmission; anything else raises :class:`RejectionError`."""
        try:
            envelope = dsse.Envelope.from_json(body)
        except TrustError as exc:
            raise RejectionError(400, "malformed_envelope", str(exc)) from exc
        digest = hashlib.sha256(envelope.payload).hexdigest()
        seen = self._seen.get(digest)
        if seen is not None:  # a retry, say: answered as a logged envelope is, without checks
            return self._resubmitted(digest, seen)
        try:
            try:
                envelope.check_bounds()
            except TrustError as exc:
                raise RejectionError(400, "malformed_envelope", str(exc)) from None
            feed = self._feed(envelope)
            identity = supplier_id(feed.get("header", {}).get("supplier"))
        except RejectionError as refusal:
            return self._logged_already(digest, refusal)
        wanted = {signature.keyid for signature in envelope.signatures}
        kept = self._keys.get(identity)
        if kept is not None and any(row[0] in wanted for row in kept):
            try:
                key: _SigningKey | None = self._checked(envelope, feed, identity, kept)
            except RejectionError:
                # Judged on keys read earlier, without asking whether the envelope is logged:
                # the refusal stands if those are the keys now and the envelope is not logged.
                seen, keys = self._read(digest, identity)
                if seen is not None:
                    return self._resubmitted(digest, seen)
                if keys == kept:
                    raise
                key = None
            if key is not None:
                try:
                    return self._stored(envelope, digest, feed, identity, key)
                except UnmetConditionError:  # its key revoked, or the envelope logged, since
                    seen, keys = self._read(digest, identity)
                    if seen is not None:
                        return self._resubmitted(digest, seen)
        else:
            seen, keys = self._read(digest, identity)
            if seen is not None:
                return self._resubmitted(digest, seen)
        key = self._checked(envelope, feed, identity, keys)
        try:
            return self._stored(envelope, digest, feed, identity, key)
        except UnmetConditionError:
            seen, _ = self._read(digest, identity)
            if seen is not None:  # logged by a concurrent request
                return self._resubmitted(digest, seen)
            raise RejectionError(
                409,
                "key_changed",
                "the signing key was revoked while the attestation was being stored; nothing "
                "was stored: sign with a current key",
            ) from None

    def _read(self, digest: str, identity: str) -> tuple[int | None, list[tuple[Any, ...]]]:
        """Whether an envelope is logged (its entry's number), and its supplier's keys, as
        they are now; the keys are kept (an unknown supplier's none: it may register any
        moment)."""
        # Reading connections: on PostgreSQL, outside a transaction, a read is one round trip
        # rather than three (BEGIN, and ROLLBACK when it goes back to the pool).
        with self.log.reading() as connection:
            rows = _SEEN_AND_KEYS.rows(connection, {"digest": digest, "supplier": identity})
        keys = [row[1:] for row in rows if row[1] is not None]
        if keys:
            self._keys.put(identity, keys)
        else:
            self._keys.forget(identity)
        return (None if rows[0][0] is None else int(rows[0][0])), keys

    def _logged_already(self, digest: str, refusal: RejectionError) -> tuple[int, dict[str, Any]]:
        """The 409 answer for an envelope that is logged already, refused now: logged once, an
        envelope is answered with its bundle even if it would be refused now (by a newer
        registry's checks, say). Raises ``refusal`` otherwise."""
        with self.log.reading() as connection:
            seen = _SEEN.scalar(connection, {"digest": digest})
        if seen is None:
            raise refusal
        return self._resubmitted(digest, int(seen))

    def _resubmitted(self, digest: str, seen: int) -> tuple[int, dict[str, Any]]:
        """The 409 answer for the envelope of payload ``digest``, logged as entry ``seen``."""
        self._seen.put(digest, seen)
        if self.log.waiting():  # e.g. stored during a TSA outage: log it now
            self._integrate()
        return 409, {"error": "already_logged", "bundle": self.bundle_for(seen).to_json()}

    def _checked(
        self,
        envelope: dsse.Envelope,
        feed: dict[str, Any],
        identity: str,
        keys: list[tuple[Any, ...]],
    ) -> _SigningKey:
        """The key that signed, among ``keys`` (the supplier's key rows as read, by this
        request or kept from an earlier one), once the feed passed its checks."""
        if not keys:  # every registered identity has a key, revoked or not
            raise RejectionError(
                403,
                "unknown_supplier",
                f"{identity[:80]} (the feed's header.supplier, by its first identifier) is not "
                "registered: register it with its key first (POST /api/v1/suppliers, or `sqm "
                "supplier register`)",
            )
        wanted = {signature.keyid for signature in envelope.signatures}
        key = self._verify_signature(envelope, identity, [row for row in keys if row[0] in wanted])
        self._check_feed(feed)
        return key

    def _stored(
        self,
        envelope: dsse.Envelope,
        digest: str,
        feed: dict[str, Any],
        identity: str,
        key: _SigningKey,
    ) -> tuple[int, dict[str, Any]]:
        """Store and log a checked attestation: (201, its bundle), or (409, the bundle) when a
        concurrent request stored it first; UnmetConditionError when ``key``'s row changed
        since it was read, or the envelope was logged, by the time of the write."""
        sequence = feed["header"]["sequence"]

        # The entry and its attestation row commit together: a refused feed is never logged.
        # The log fills in previousIndex at integration: the supplier's chain stays linear
        # however many workers accept its feeds at once. What the rows hold is computed
        # first: the write runs while holding the log's write lock, which every worker waits for.
        leaf = bundle.attestation_leaf(identity, envelope, None, digest)
        stored = stored_envelope(envelope)

        def write(connection: Connection) -> Callable[[], int]:
            # Sent without waiting for the entry's number, which the attestation's row takes
            # in SQL: on PostgreSQL the batch's writes go to the server in one pipeline.
            row = {
                "supplier": identity,
                "feed_sequence": sequence,
                "payload_sha256": digest,
                "key_id": key.key_id,
                "envelope": stored,
            }
            chain = f"attestations:{identity}"
            as_read = {
                "signing_key": key.key_id,
                "signing_key_revocation": key.revocation_seq,
                "logged_digest": digest,
            }
            return self.log.sequence_later(
                leaf, chain, connection, (_NEW_ATTESTATION, row), as_read
            )

        try:
            seq, integration = self._logged(write, pipelinable=True)
        except IntegrityError:
            with self.log.engine.connect() as connection:
                seen = connection.execute(
                    select(attestations.c.seq).where(attestations.c.payload_sha256 == digest)
                ).scalar()
            if seen is not None:  # the same envelope, logged by an earlier or concurrent request
                self._integrate()
                return 409, {
                    "error": "already_logged",
                    "bundle": self.bundle_for(int(seen)).to_json(),
                }
            raise RejectionError(
                409,
                "sequence_taken",
                f"{identity} already published feed sequence {sequence}; a new feed needs a new sequence",
            ) from None
        self._seen.put(digest, seq)  # committed: logged, or logged by the next write
        made = None if integration is None else self._new_bundle(envelope, seq, key, integration)
        return 201, (made or self.bundle_for(seq)).to_json()

    def _new_bundle(
        self, envelope: dsse.Envelope, seq: int, key: _SigningKey, integration: Integration
    ) -> bundle.Bundle | None:
        """The bundle of an attestation its own request just integrated, against that batch's
        checkpoint, which is also the first to hold it (so no consistency proof): built from
        what the request holds and what the log remembers, reading only what it does not.
        None when an entry it needs is not at hand (then :meth:`bundle_for` builds it)."""
        signed = integration.signed
        size = signed.checkpoint.size
        wanted = [seq, key.seq] + ([] if key.revocation_seq is None else [key.revocation_seq])
        # Mostly from what the log remembers of committed batches (its key's entry, and the
        # subtrees of recent batches that the paths pass through): then nothing is read.
        entries = {**self.log.entries_by_seq(wanted[1:]), **integration.entries}
        # A rotated-in key's bundle carries its chain, which bundle_for reads (the text test
        # may be wrong only the safe way: a member name inside the organisation).
        if any(s not in entries for s in wanted) or b'"authorizedBy"' in entries[key.seq][1]:
            return None
        paths, _ = self.log.proofs([(entries[s][0], size) for s in wanted])
        included = [
            bundle.Included(entries[s][1], entries[s][0], size, tuple(path))
            for s, path in zip(wanted, paths, strict=True)
        ]
        return bundle.Bundle(
            envelope, included[0], included[1], signed.note, signed.timestamp,
            bundle.LoggedAt(signed.note, signed.timestamp, (), signed.additional_timestamps),
            included[2] if len(included) > 2 else None, signed.additional_timestamps,
        )  # fmt: skip

    def _feed(self, envelope: dsse.Envelope) -> dict[str, Any]:
        if envelope.payload_type != bundle.PAYLOAD_TYPE:
            raise RejectionError(
                415, "unsupported_payload_type", f"payloadType must be {bundle.PAYLOAD_TYPE}"
            )
        try:
            # json.loads takes more: an encoded surrogate, where a later duplicate key hides it
            # from the parsed value. Such bytes are no JSON text (RFC 8259 §8.1), and would
            # not read back as the stored envelope's text. UTF-16 and UTF-32 are not either.
            envelope.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RejectionError(
                400,
                "malformed_statement",
                f"the payload is not UTF-8 text, which JSON exchanged between systems must be "
                f"(RFC 8259 section 8.1): {exc}",
            ) from None
        if envelope.payload.startswith(b"\xef\xbb\xbf"):
            raise RejectionError(
                400,
                "malformed_statement",
                "the payload starts with a byte order mark, which JSON text sent between "
                "systems must not (RFC 8259 section 8.1), and strict readers refuse: sign the "
                "JSON without it",
            )
        if b"\x00" in envelope.payload or b"\\u0000" in envelope.payload:
            raise RejectionError(
                422,
                "nul_character",
                "the feed contains a NUL character (U+0000), which no SQM value may hold",
            )
        try:
            statement, canonical_feed = loads_with_canonical(envelope.payload, "predicate")
        except (ValueError, UnicodeDecodeError) as exc:
            raise RejectionError(
                400, "malformed_statement", f"the payload is not JSON: {json_error(exc)}"
            ) from exc
        except RecursionError:
            raise RejectionError(
                400,
                "malformed_statement",
                "the payload nests arrays or objects too deeply to parse; no SQM feed needs "
                "more than a few levels",
            ) from None
        if (
            not isinstance(statement, dict)
            or statement.get("predicateType") != bundle.PREDICATE_TYPE
        ):
            raise RejectionError(
                422, "not_an_sqm_statement", f"predicateType must be {bundle.PREDICATE_TYPE}"
            )
        feed = statement.get("predicate")
        if not isinstance(feed, dict) or not isinstance(feed.get("header"), dict):
            raise RejectionError(
                422, "invalid_feed", "the statement's predicate must be a feed with a header"
            )
        try:
            if canonical_feed is None:
                canonical_feed = canonical_text(envelope.payload, "predicate")
        except TrustError as exc:
            raise RejectionError(
                422,
                "no_canonical_form",
                f"the feed has no canonical JSON form (RFC 8785), which its digest is over: "
                f"{exc}. Numbers must be finite, and integers within +-9007199254740991 "
                "(2^53 - 1): carry larger ones as strings",
            ) from None
        if statement != bundle.statement(feed, canonical_feed):
            raise RejectionError(
                422, "subject_mismatch", "the statement's subject must name the feed's digest"
            )
        return feed

    def _verify_signature(
        self, envelope: dsse.Envelope, identity: str, rows: Sequence[Any]
    ) -> _SigningKey:
        """The registered, unrevoked key of ``identity`` whose signature verifies, among
        ``rows`` (:func:`_signing_keys`)."""
        # Not only revoked keys: a key revoked from within the next REVOCATION_MARGIN would be
        # revoked by the time its entry's first checkpoint is stamped, and its bundle would fail.
        horizon = self.now() + REVOCATION_MARGIN
        current = {
            key_id: _SigningKey(key_id, int(seq), None if revocation is None else int(revocation))
            for key_id, _, revoked, seq, revocation in rows
            if revoked is None or _aware(revoked) > horizon
        }
        keys = {
            key_id: Ed25519PublicKey.from_public_bytes(bytes(public))
            for key_id, public, *_ in rows
            if key_id in current
        }
        if not keys:
            raise RejectionError(
                403,
                "unknown_key",
                f"no registered key of {identity} signed this envelope that is unrevoked for "
                f"at least {REVOCATION_MARGIN.total_seconds():g} more seconds (an entry is "
                "judged by the time of the checkpoint that first logs it): sign with a current key",
            )
        try:
            return current[dsse.verify(envelope, keys)]
        except TrustError:
            raise RejectionError(
                403, "signature_invalid", "the envelope's signature does not verify"
            ) from None

    def _check_feed(self, feed: dict[str, Any]) -> None:
        now = self.now()
        result = validate(feed, now=now)
        errors = [f for f in result.findings if f.severity is Severity.ERROR]
        if errors:
            raise RejectionError(
                422,
                "invalid_feed",
                f"the feed has {len(errors)} errors",
                {"findings": [f.to_dict() for f in result.findings]},
            )
        issued = datetime.fromisoformat(feed["header"]["issued_at"])
        if not now - self.issued_window <= issued <= now + CLOCK_SKEW:
            raise RejectionError(
                422,
                "issued_at_out_of_window",
                f"the feed was issued at {issued.isoformat()}; the registry accepts feeds issued "
                f"within the last {self.issued_window.total_seconds() / 3600:g} hours (and at most "
                f"{CLOCK_SKEW.total_seconds() / 60:g} minutes ahead): set header.issued_at to "
                "the time you sign, with a new header.sequence",
            )

    # --- endorsements ---------------------------------------------------------------------------

    def endorse(self, body: Any) -> tuple[int, dict[str, Any]]:
        """Log a registered endorser's signed endorsement of a logged attestation: (201, its
        entry), or (409, the entry) when the same endorsement payload is logged already."""
        try:
            envelope = dsse.Envelope.from_json(body)
            envelope.check_bounds()
        except TrustError as exc:
            raise RejectionError(400, "malformed_envelope", str(exc)) from exc
        if envelope.payload_type != bundle.ENDORSEMENT_TYPE:
            raise RejectionError(
                415, "unsupported_payload_type", f"payloadType must be {bundle.ENDORSEMENT_TYPE}"
            )
        endorser, index, digest, assurance = _endorsement_claim(envelope.payload)
        if not 0 <= index < 2**63:
            raise RejectionError(422, "no_such_attestation", f"no log index {index}")
        if assurance not in bundle.ENDORSEMENT_LEVELS:
            raise RejectionError(
                422,
                "invalid_assurance",
                f"assurance must be one of {', '.join(bundle.ENDORSEMENT_LEVELS)}",
            )
        with self.log.engine.connect() as connection:
            role = connection.execute(
                select(suppliers.c.role).where(suppliers.c.id == endorser)
            ).scalar()
            logged = connection.execute(
                select(attestations.c.payload_sha256, attestations.c.supplier)
                .join(log_entries, log_entries.c.seq == attestations.c.seq)
                .where(log_entries.c.idx == index)
            ).first()
            registered = _signing_keys(connection, envelope, endorser)
        if role != "endorser":
            raise RejectionError(
                403, "not_an_endorser", f"{endorser!r} is not a registered endorser"
            )
        signer = self._verify_signature(envelope, endorser, registered)
        if logged is None or logged[0] != digest:
            raise RejectionError(
                422, "no_such_attestation", f"no attestation with that digest at log index {index}"
            )
        if logged[1] == endorser:
            raise RejectionError(
                422,
                "self_endorsement",
                f"log index {index} is {endorser}'s own attestation: an endorsement is another "
                "party's word",
            )

        def write(connection: Connection) -> int:
            # Under the log's write lock: an endorser endorses an attestation at a level once
            # (a second would raise nothing), however the claim is written or sent; and the
            # key that signed is still unrevoked (a revocation may have come since the check).
            revoked = connection.execute(
                select(supplier_keys.c.revoked_at).where(supplier_keys.c.key_id == signer.key_id)
            ).first()
            if revoked is None or (
                revoked[0] is not None and _aware(revoked[0]) <= self.now() + REVOCATION_MARGIN
            ):
                raise RejectionError(
                    409,
                    "key_changed",
                    "the signing key was revoked while the endorsement was being stored; "
                    "nothing was stored: sign with a current key",
                )
            seen = connection.execute(
                select(endorsements.c.seq).where(
                    endorsements.c.endorser == endorser,
                    endorsements.c.attestation_index == index,
                    endorsements.c.assurance == assurance,
                )
            ).scalar()
            if seen is not None:
                raise _LoggedAlreadyError(int(seen))
            seq = self.log.sequence(
                bundle.endorsement_leaf(endorser, index, digest, assurance, envelope),
                connection=connection,
            )
            connection.execute(
                endorsements.insert().values(
                    seq=seq,
                    endorser=endorser,
                    attestation_index=index,
                    assurance=assurance,
                    envelope=json.dumps(envelope.to_json()),
                )
            )
            return seq

        try:
            seq, integration = self._logged(write)
        except _LoggedAlreadyError as known:
            # An exact resubmission: answered with its entry, as an attestation's is.
            if self.log.waiting():  # e.g. stored during a TSA outage: log it now
                self._integrate()
            return 409, {
                "error": "already_logged",
                "endorser": endorser,
                "assurance": assurance,
                **self._included(known.seq).to_json(),
            }
        return 201, {
            "endorser": endorser,
            "assurance": assurance,
            **self._included(seq, integration).to_json(),
        }

    def endorsements_of(self, index: int) -> list[dict[str, Any]]:
        """The logged endorsements of the attestation at ``index``."""
        with self.log.engine.connect() as connection:
            rows = connection.execute(
                select(
                    log_entries.c.idx,
                    endorsements.c.endorser,
                    endorsements.c.assurance,
                    suppliers.c.verification,
                )
                .join(log_entries, log_entries.c.seq == endorsements.c.seq)
                .join(suppliers, suppliers.c.id == endorsements.c.endorser)
                .where(endorsements.c.attestation_index == index)
                .order_by(log_entries.c.idx)
            ).all()
        return [
            {"logIndex": int(i), "endorser": e, "assurance": a, "endorserVerification": v}
            for i, e, a, v in rows
        ]

    # --- bundles --------------------------------------------------------------------------------

    def _index(self, seq: int) -> int:
        with self.log.engine.connect() as connection:
            value = connection.execute(
                select(log_entries.c.idx).where(log_entries.c.seq == seq)
            ).scalar()
        if value is None:
            raise RejectionError(
                503, "not_yet_integrated", "the entry is sequenced but not yet in the tree"
            )
        return int(value)

    def _included(self, seq: int, integration: Integration | None = None) -> bundle.Included:
        """The entry ``seq`` with its inclusion proof to the newest checkpoint, or to the
        checkpoint of the ``integration`` that just logged it."""
        if integration is not None and seq in integration.entries:
            index, leaf = integration.entries[seq]
            size = integration.signed.checkpoint.size
            return bundle.Included(leaf, index, size, tuple(self.log.inclusion_proof(index, size)))
        index = self._index(seq)
        signed = self.log.latest()
        assert signed is not None
        size = signed.checkpoint.size
        proof = tuple(self.log.inclusion_proof(index, size))
        return bundle.Included(self.log.leaf(index), index, size, proof)

    def bundle_at(self, index: int) -> bundle.Bundle:
        """The bundle of the attestation or endorsement at log index ``index``."""
        with self.log.engine.connect() as connection:
            seq = connection.execute(
                select(log_entries.c.seq).where(log_entries.c.idx == index)
            ).scalar()
        if seq is None:
            raise RejectionError(404, "no_such_entry", f"no log entry {index}")
        return self.bundle_for(int(seq))

    def bundle_for(self, seq: int) -> bundle.Bundle:
        """The offline bundle of an attestation or an endorsement, against the newest
        checkpoint."""
        # One connection for the bundle's reads: taking one from the pool and giving it back
        # cost about as much as a read.
        with self.log.reading() as connection:
            row = connection.execute(
                select(attestations.c.envelope, supplier_keys.c.seq, supplier_keys.c.revocation_seq)
                .join(supplier_keys, supplier_keys.c.key_id == attestations.c.key_id)
                .where(attestations.c.seq == seq)
            ).first()
            if row is not None:
                envelope, endorsed = envelope_of(row[0]), None
                key, revocation = int(row[1]), None if row[2] is None else int(row[2])
            else:
                envelope, key, revocation, endorsed = self._endorsement_parts(seq, connection)
            chain = self._key_chain(key, connection)
            wanted = [seq, key, *chain] + [s for s in (revocation, endorsed) if s is not None]
            entries = self.log.entries_by_seq(wanted, connection)
            # The checkpoint is read after the entries (on SQLite in the same snapshot): an
            # entry and the checkpoint of its batch commit together, so it holds them all. A
            # key's revocation can be sequenced and not yet in the tree (stored during a TSA
            # outage): its bundle waits for it.
            signed = self.log.latest(connection)
            if signed is None or any(
                s not in entries or entries[s][0] >= signed.checkpoint.size for s in wanted
            ):
                raise RejectionError(
                    503, "not_yet_integrated", "the entry is sequenced but not yet in the tree"
                )
            size = signed.checkpoint.size
            first = self.log.first_holding(entries[seq][0], connection)
            paths, (consistency,) = self.log.proofs(
                [(entries[s][0], size) for s in wanted],
                [(first.checkpoint.size, size)],
                connection=connection,
            )
        included = {
            s: bundle.Included(entries[s][1], entries[s][0], size, tuple(path))
            for s, path in zip(wanted, paths, strict=True)
        }
        return bundle.Bundle(
            envelope, included[seq], included[key], signed.note, signed.timestamp,
            bundle.LoggedAt(
                first.note, first.timestamp, tuple(consistency), first.additional_timestamps
            ),
            None if revocation is None else included[revocation], signed.additional_timestamps,
            None if endorsed is None else included[endorsed],
            tuple(included[link] for link in chain),
        )  # fmt: skip

    def _key_chain(self, key_seq: int, connection: Connection) -> list[int]:
        """The registration entries from the identity's first key to the one that authorised
        the key registered as ``key_seq``, oldest first (none for a first key)."""
        chain: list[int] = []
        seq = key_seq
        while True:
            entry = self.log.entries_by_seq([seq], connection).get(seq)
            leaf = (
                entry[1]
                if entry is not None
                else connection.execute(
                    select(log_pending.c.leaf).where(log_pending.c.seq == seq)
                ).scalar()
            )
            if leaf is None:
                raise DamagedStoreError(
                    f"the key registered as entry sequence {seq} is neither in the log nor "
                    "waiting for it: restore the database from a backup"
                )
            authorized_by = json.loads(bytes(leaf)).get("authorizedBy")
            if authorized_by is None:
                return chain[::-1]
            found = connection.execute(
                select(supplier_keys.c.seq).where(supplier_keys.c.key_id == authorized_by)
            ).scalar()
            if found is None or int(found) in chain or int(found) == key_seq:
                raise DamagedStoreError(
                    f"the key registered as entry sequence {seq} names an authorising key "
                    f"{str(authorized_by)[:16]}... the store lacks (or a loop): restore the "
                    "database from a backup (`sqm registry fsck` checks the log)"
                )
            seq = int(found)
            chain.append(seq)

    def _endorsement_parts(
        self, seq: int, connection: Connection
    ) -> tuple[dsse.Envelope, int, int | None, int]:
        """An endorsement's envelope, and the entries its bundle proves with it: the
        endorser's key that signed it, that key's revocation if any, and the endorsed
        attestation. RejectionError 404 when ``seq`` is no endorsement either."""
        row = connection.execute(
            select(endorsements.c.envelope, endorsements.c.endorser, log_entries.c.seq)
            .join(log_entries, log_entries.c.idx == endorsements.c.attestation_index)
            .where(endorsements.c.seq == seq)
        ).first()
        if row is None:
            raise RejectionError(
                404,
                "no_such_attestation",
                "the entry is neither an attestation nor an endorsement, which bundles are of: "
                "a key's or identity's entry is proven by its leaf and inclusion proof, GET "
                "/api/v1/log/entries/<index>",
            )
        envelope = envelope_of(row[0])
        # The table does not name the key that signed. Of the endorser's keys whose signature
        # verifies, the registry accepted one registered before the endorsement and unrevoked
        # then: the one registered before it and revoked last (or not at all) is valid
        # whenever any is.
        verifying = []
        for key_id, public, revoked_at, key_seq, revocation_seq in _signing_keys(
            connection, envelope, row[1]
        ):
            try:
                dsse.verify(envelope, {key_id: Ed25519PublicKey.from_public_bytes(bytes(public))})
            except (TrustError, ValueError):
                continue
            verifying.append(
                (key_seq < seq, revoked_at is None, revoked_at, key_seq, revocation_seq)
            )
        if not verifying:
            raise DamagedStoreError(
                f"no registered key of {row[1]} verifies a stored endorsement: the database was "
                "changed outside the registry; restore it from a backup (`sqm registry fsck` "
                "checks the log)"
            )
        *_, key_seq, revocation_seq = max(
            verifying, key=lambda k: (k[0], k[1], k[2] and _aware(k[2]))
        )
        return (
            envelope,
            int(key_seq),
            None if revocation_seq is None else int(revocation_seq),
            int(row[2]),
        )

    def set_verification(self, supplier: str, status: Any) -> dict[str, Any]:
        """Set a supplier identity's verification status (the operator's call), logged as an
        entry of its own; the status it already has changes nothing and logs nothing."""
        supplier = _identifier(supplier, "the supplier id in the path")
        if status not in bundle.VERIFICATION_STATUSES:
            raise RejectionError(
                400,
                "invalid_status",
                f"status must be one of {', '.join(bundle.VERIFICATION_STATUSES)}",
            )
        leaf = bundle.verification_leaf(supplier, status, self.now().isoformat())

        def write(connection: Connection) -> int:
            # Read under the log's write lock: two requests setting one status log it once.
            current = connection.execute(
                select(suppliers.c.verification).where(suppliers.c.id == supplier)
            ).scalar()
            if current is None:
                raise RejectionError(404, "no_such_supplier", f"no supplier {supplier!r}")
            if current == status:
                raise _UnchangedError
            seq = self.log.sequence(leaf, connection=connection)
            connection.execute(
                suppliers.update().where(suppliers.c.id == supplier).values(verification=status)
            )
            return seq

        try:
            seq, integration = self._logged(write)
        except _UnchangedError:  # the status it has: nothing to log
            return {"supplier": supplier, "verification": status, "changed": False}
        return {
            "supplier": supplier,
            "verification": status,
            "changed": True,
            **self._included(seq, integration).to_json(),
        }

    def revoke_key(self, key: str, body: Any, operator: bool) -> dict[str, Any]:
        """Revoke a key from ``revokedAt`` on: signed by the key holder, or by the operator.
        History is not rewritten: the revocation is a new log entry."""
        if not isinstance(body, dict) or not isinstance(body.get("revokedAt"), str):
            raise RejectionError(
                400, "malformed_request", 'send {"revokedAt": RFC 3339, "signature": base64}'
            )
        # Logged as sent, and read by verifiers in any language: RFC 3339 only, not the rest
        # of ISO 8601 that Python also reads (week dates, basic format).
        revoked_at = bundle.rfc3339(body["revokedAt"])
        if revoked_at is None:
            raise RejectionError(
                400,
                "invalid_time",
                "revokedAt must be an RFC 3339 date-time with its offset, e.g. "
                "2026-11-04T12:00:00Z or 2026-11-04T13:00:00.5+01:00, from year 1 to 9999 in UTC"
                + (
                    # RFC 3339 allows :60, but Go's, JavaScript's and Python's readers do not,
                    # and every verifier must read the leaf that keeps this text.
                    "; a leap second (:60) is not taken, since common verifiers cannot read "
                    "it: name the second after it (:00 of the next minute)"
                    if _LEAP_SECOND.search(body["revokedAt"])
                    else ""
                ),
            )
        if not is_key_id(key):
            raise RejectionError(404, "no_such_key", f"no registered key {key[:80]!r}")
        with self.log.engine.connect() as connection:
            row = connection.execute(
                select(
                    supplier_keys.c.supplier,
                    supplier_keys.c.public_key,
                    supplier_keys.c.revocation_seq,
                    supplier_keys.c.revoked_at,
                ).where(supplier_keys.c.key_id == key)
            ).first()
        if row is None:
            raise RejectionError(404, "no_such_key", f"no registered key {key}")
        supplier, public, already, already_at = row
        # A revoked key may be revoked again from an earlier time only: a key found stolen
        # after its holder scheduled its retirement. A later time would reopen what is shut.
        if already is not None and revoked_at >= _aware(already_at):
            # Named with its entry and proof: a client that lost the answer, or resent after
            # a 503, gets what the revocation logged.
            entry = self._known_entry(int(already))
            raise RejectionError(
                409,
                "already_revoked",
                f"key {key} is already revoked from {_aware(already_at).isoformat()} (log entry "
                f"{entry['logIndex']}); a further revocation must take effect earlier",
                {"keyId": key, **entry},
            )
        if already is not None and not operator and _aware(already_at) <= self.now():
            # A retired key's private half may leak long after: were it to move its revocation
            # earlier, it would disown what it signed while it was in use.
            raise RejectionError(
                403,
                "operator_required",
                f"key {key} is retired since {_aware(already_at).isoformat()}: only the operator "
                "may revoke it from an earlier time",
            )
        message = bundle.revocation_message(supplier, key, body["revokedAt"])
        signature = b""
        if not operator:
            signature = _b64(body.get("signature"), "signature")
            try:
                Ed25519PublicKey.from_public_bytes(bytes(public)).verify(signature, message)
            except InvalidSignature:
                raise RejectionError(
                    403,
                    "signature_invalid",
                    "the key holder's signature over the revocation does not verify",
                ) from None
        leaf = bundle.revocation_leaf(
            supplier, key, body["revokedAt"], "operator" if operator else "key-holder", signature
        )

        def write(connection: Connection) -> int:
            seq = self.log.sequence(leaf, connection=connection)
            unchanged = (
                supplier_keys.c.revocation_seq.is_(None)
                if already is None
                else supplier_keys.c.revocation_seq == already
            )
            updated = connection.execute(
                supplier_keys.update()
                .where(supplier_keys.c.key_id == key, unchanged)
                .values(revoked_at=utc(revoked_at), revocation_seq=seq)
            )
            if updated.rowcount != 1:  # revoked by a concurrent request: log nothing
                raise RejectionError(
                    409, "already_revoked", f"key {key} was revoked meanwhile: ask again"
                )
            if operator:
                # The operator's call, not a key holder's: a thief holding the key could
                # otherwise revoke the successor its holder rotated in.
                # Assigned, not added to: a batch refused elsewhere runs this write again.
                cascaded[:] = self._revoke_authorised(connection, supplier, key, revoked_at)
            return seq

        cascaded: list[tuple[str, str]] = []
        try:
            seq, integration = self._logged(write)
        except RejectionError as refusal:
            if refusal.code == "timestamp_unavailable":
                # Stored, with the keys revoked with it: a resubmission answers with the
                # entry, but only this answer can name those keys.
                refusal.details["alsoRevoked"] = _also_revoked(cascaded)
            raise
        finally:  # this worker's attestations read the key afresh (others', see Ingest._keys)
            self._keys.forget(supplier)
        return {
            "keyId": key,
            "revokedAt": body["revokedAt"],
            **self._included(seq, integration).to_json(),
            "alsoRevoked": _also_revoked(cascaded),
        }

    def _revoke_authorised(
        self, connection: Connection, supplier: str, key: str, revoked_at: datetime
    ) -> list[tuple[str, str]]:
        """Revoke, under the log's write lock, each key that ``key`` authorised after its
        revocation from ``revoked_at`` took effect (a thief's key, rotated in with a stolen
        one), from that key's own start, and so on down what those authorised: none was ever
        authorised. Each is a log entry of its own (``by`` "authoriser-revoked"). The keys
        revoked, with the time each is revoked from."""
        rows = connection.execute(
            select(
                supplier_keys.c.key_id,
                supplier_keys.c.seq,
                supplier_keys.c.revoked_at,
            ).where(supplier_keys.c.supplier == supplier)
        ).all()
        seqs = [int(row[1]) for row in rows]
        leaves = {
            int(entry_seq): json.loads(bytes(leaf))
            for table in (log_entries, log_pending)
            for entry_seq, leaf in connection.execute(
                select(table.c.seq, table.c.leaf).where(table.c.seq.in_(seqs))
            )
        }
        revoked: list[tuple[str, str]] = []
        waiting = [(key, revoked_at)]
        while waiting:
            authoriser, since = waiting.pop()
            for key_id, key_seq, key_revoked_at in rows:
                leaf = leaves.get(int(key_seq), {})
                start = bundle.leaf_time(leaf.get("validFrom"))
                if leaf.get("authorizedBy") != authoriser or start is None or start <= since:
                    continue  # authorised while its authoriser was still valid
                if key_revoked_at is not None and _aware(key_revoked_at) <= start:
                    continue  # revoked from its start already
                when = str(leaf["validFrom"])
                entry = self.log.sequence(
                    bundle.revocation_leaf(supplier, key_id, when, "authoriser-revoked", b""),
                    connection=connection,
                )
                connection.execute(
                    supplier_keys.update()
                    .where(supplier_keys.c.key_id == key_id)
                    .values(revoked_at=utc(start), revocation_seq=entry)
                )
                revoked.append((str(key_id), when))
                waiting.append((str(key_id), start))
        return revoked


class _UnchangedError(Exception):
    """A write found nothing to change, so nothing to log."""


class _LoggedAlreadyError(Exception):
    """What a write was to log is logged already, as entry ``seq``."""

    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq


def _endorsement_claim(payload: bytes) -> tuple[str, int, str, str]:
    """An endorsement payload's endorser, attestation log index and payload digest, and
    assurance level, each of the type it must have (no coercion: 5.7 is no log index)."""
    shape = (
        'the payload must be {"endorser": id, "attestation": {"logIndex": integer, '
        '"payloadSha256": 64 hex digits}, "assurance": level} and optionally "scope": text, '
        "and nothing else"
    )
    try:
        # I-JSON: a first-wins reader of a member named twice would see another endorser.
        claim = strict_loads(payload)
    except StrictJSONError as exc:
        raise RejectionError(400, "malformed_endorsement", f"the payload {exc}") from None
    if b"\x00" in payload or b"\\u0000" in payload:
        raise RejectionError(
            400, "malformed_endorsement", "the payload may not contain U+0000 (NUL)"
        )
    attestation = claim.get("attestation") if isinstance(claim, dict) else None
    if (
        not isinstance(attestation, dict)
        or not set(claim) <= _ENDORSEMENT_MEMBERS
        or not set(attestation) <= {"logIndex", "payloadSha256"}
    ):
        raise RejectionError(400, "malformed_endorsement", shape)
    scope = claim.get("scope")
    if scope is not None and (not isinstance(scope, str) or len(scope) > MAX_SCOPE_CHARS):
        raise RejectionError(
            400,
            "malformed_endorsement",
            f"scope, when given, is text of at most {MAX_SCOPE_CHARS} characters",
        )
    index, digest, assurance = (
        attestation.get("logIndex"),
        attestation.get("payloadSha256"),
        claim.get("assurance"),
    )
    if (
        not isinstance(index, int)
        or isinstance(index, bool)
        or not isinstance(digest, str)
        or len(digest) != 64
        or _HEX.fullmatch(digest) is None
        or not isinstance(assurance, str)
    ):
        raise RejectionError(400, "malformed_endorsement", shape)
    try:
        endorser = _identifier(claim.get("endorser"), "endorser")
    except RejectionError as refusal:
        raise RejectionError(400, "malformed_endorsement", refusal.message) from None
    return endorser, index, digest, assurance


def _also_revoked(cascaded: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"keyId": key, "revokedAt": at} for key, at in cascaded]


def _unavailable(exc: TimestampUnavailableError) -> RejectionError:
    return RejectionError(
        503,
        "timestamp_unavailable",
        f"{exc}. The entry is stored and will be logged when the TSA answers; "
        "resubmit the same request later to get its proof",
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
