"""RFC 3161 timestamps: a small TSA (token builder) and a token checker.

The TSA signs with ECDSA P-256 (OpenSSL 3.0's CMS code has no EdDSA) under a certificate whose
only extended key usage, timeStamping, is critical (RFC 3161 section 2.3). Tokens carry the
signingCertificateV2 attribute (ESSCertIDv2, RFC 5816). Built with cryptography (keys,
certificates, signatures) and asn1crypto (TSTInfo, CMS SignedData, TimeStampResp): the
cryptography PKCS7 builder cannot set the id-ct-TSTInfo content type.

The checker verifies what neither `openssl ts -verify` nor rfc3161-client checks alone: the
ESSCertIDv2 binding *and* the TSA certificate's validity at genTime, besides the imprint, the
CMS signature and the chain to the trusted CA.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sqm.trust.errors import TrustError, VerificationError

# An SQM policy OID under the private-enterprise example arc; a real deployment registers its own.
DEFAULT_POLICY = "1.3.6.1.4.1.99999.3161.1"
MAX_RESPONSE_BYTES = 64 * 1024
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


@dataclass(frozen=True)
class Authority:
    """A TSA: its signing key and certificate, and the CA certificate that issued it."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    ca_certificate: x509.Certificate
    policy: str = DEFAULT_POLICY

    def ca_pem(self) -> bytes:
        return self.ca_certificate.public_bytes(serialization.Encoding.PEM)


def create_authority(
    name: str, now: datetime, years: int = 10, policy: str = DEFAULT_POLICY
) -> tuple[Authority, ec.EllipticCurvePrivateKey]:
    """A new CA and TSA certificate pair valid from ``now``; returns the TSA and the CA key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    until = now + timedelta(days=365 * years)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Timestamp CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} TSA")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        # RFC 5280 4.2.1.2: SHOULD be in end-entity certificates; a CMS signer may be named by it.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Authority(key, certificate, ca, policy), ca_key


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class _Parts:
    """The DER of what every token of one TSA repeats, encoded once: asn1crypto re-encodes
    nested structures on every assignment, which made each token cost several milliseconds."""

    certificate: bytes
    tsa_name: bytes
    ess_attribute: bytes
    signer_id: bytes


_PARTS: dict[bytes, _Parts] = {}


def _parts(authority: Authority) -> _Parts:
    der = authority.certificate.public_bytes(serialization.Encoding.DER)
    cached = _PARTS.get(der)
    if cached is not None:
        return cached
    certificate = asn1_x509.Certificate.load(der)
    ess = {
        # hashAlgorithm is left out: SHA-256 is its DEFAULT, which DER must not encode.
        "cert_hash": hashlib.sha256(der).digest(),
        "issuer_serial": {
            "issuer": [asn1_x509.GeneralName({"directory_name": certificate.issuer})],
            "serial_number": certificate.serial_number,
        },
    }
    made = _Parts(
        certificate=der,
        tsa_name=asn1_x509.GeneralName({"directory_name": certificate.subject}).dump(),
        ess_attribute=cms.CMSAttribute(
            {"type": "signing_certificate_v2", "values": [{"certs": [ess]}]}
        ).dump(),
        signer_id=cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": certificate.issuer,
                    "serial_number": certificate.serial_number,
                }
            }
        ).dump(),
    )
    _PARTS[der] = made
    return made


def stamp_digest(
    authority: Authority,
    digest: bytes,
    gen_time: datetime,
    serial: int,
    nonce: int | None = None,
    *,
    include_certificate: bool = True,
    include_ess: bool = True,
) -> bytes:
    """A granted TimeStampResp (DER) over a SHA-256 ``digest``; with the TSA's certificate
    unless ``include_certificate`` is false (a request without certReq, RFC 3161 2.4.1).

    ``include_ess`` exists for tests that prove a checker rejects tokens without the attribute.
    """
    if len(digest) != 32:
        raise TrustError("the message imprint must be a SHA-256 digest")
    parts = _parts(authority)
    when = gen_time.astimezone(UTC)
    content = _der(
        0x30,
        b"\x02\x01\x01",  # version v1
        _object_identifier(authority.policy),
        _der(0x30, _SHA256, _der(0x04, digest)),  # messageImprint
        _der_integer(serial),
        _der(0x18, when.strftime("%Y%m%d%H%M%SZ").encode()),  # genTime, whole seconds
        _ACCURACY_ONE_SECOND,
        b"" if nonce is None else _der_integer(nonce),
        _der(0xA0, parts.tsa_name),  # tsa [0] GeneralName (a CHOICE: explicitly tagged)
    )
    attributes = [
        _CONTENT_TYPE_TST_INFO,
        _der(0x30, _SIGNING_TIME, _der(0x31, _signing_time(when))),
        _der(0x30, _MESSAGE_DIGEST, _der(0x31, _der(0x04, hashlib.sha256(content).digest()))),
    ]
    if include_ess:
        attributes.append(parts.ess_attribute)
    # DER orders a SET OF by encoding (X.690 11.6); asn1crypto reads and re-encodes these
    # in this order, which tests check.
    signed_attributes = _der(0x31, *sorted(attributes))
    # The signature covers the DER of the attributes as a SET (tag 0x31), RFC 5652 5.4.
    signature = authority.key.sign(signed_attributes, ec.ECDSA(hashes.SHA256()))
    return _response(parts, content, signed_attributes, signature, include_certificate)


def _der(tag: int, *contents: bytes) -> bytes:
    """One DER TLV (X.690 8.1: definite length, short form below 128 bytes)."""
    body = b"".join(contents)
    size = len(body)
    if size < 0x80:
        return bytes((tag, size)) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + body


# The constant parts of every response, encoded once by asn1crypto.
_SHA256 = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
_ECDSA_SHA256 = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}).dump()
_SIGNED_DATA = cms.ContentType("signed_data").dump()
_TST_INFO = cms.ContentType("tst_info").dump()
_GRANTED = tsp.PKIStatusInfo({"status": "granted"}).dump()
_ACCURACY_ONE_SECOND = tsp.Accuracy({"seconds": 1}).dump()
_CONTENT_TYPE_TST_INFO = cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}).dump()
_SIGNING_TIME = cms.CMSAttributeType("signing_time").dump()
_MESSAGE_DIGEST = cms.CMSAttributeType("message_digest").dump()


def _signing_time(when: datetime) -> bytes:
    """UTCTime from 1950 to 2049, GeneralizedTime otherwise (RFC 5652 11.3)."""
    if 1950 <= when.year < 2050:
        return _der(0x17, when.strftime("%y%m%d%H%M%SZ").encode())
    return _der(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


def _der_integer(value: int) -> bytes:
    """An INTEGER in the fewest two's-complement octets (X.690 8.3): a nonce may be negative."""
    magnitude = value if value >= 0 else ~value
    return _der(0x02, value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True))


@functools.cache
def _object_identifier(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def _response(
    parts: _Parts,
    content: bytes,
    signed_attributes: bytes,
    signature: bytes,
    include_certificate: bool = True,
) -> bytes:
    """The granted TimeStampResp around a signed TSTInfo (RFC 3161 2.4.2, RFC 5652 5).

    Why hand-assembled: asn1crypto re-encodes the nested SignedData on every assignment, which
    cost more than half of each token, and the log stamps one per checkpoint. Only the
    outer TLVs are written here; tests check the bytes are what asn1crypto parses and
    re-encodes identically (canonical DER), and that openssl and rfc3161-client verify them.
    """
    signer = _der(
        0x30,
        b"\x02\x01\x01",  # version 1: the signer is named by issuer and serial number
        parts.signer_id,
        _SHA256,
        b"\xa0" + signed_attributes[1:],  # [0] IMPLICIT SET OF Attribute
        _ECDSA_SHA256,
        _der(0x04, signature),
    )
    signed_data = _der(
        0x30,
        b"\x02\x01\x03",  # version 3: the content type is not id-data
        _der(0x31, _SHA256),
        _der(0x30, _TST_INFO, _der(0xA0, _der(0x04, content))),
        _der(0xA0, parts.certificate) if include_certificate else b"",  # [0] CertificateSet
        _der(0x31, signer),
    )
    token = _der(0x30, _SIGNED_DATA, _der(0xA0, signed_data))
    return _der(0x30, _GRANTED, token)


def stamp(authority: Authority, message: bytes, gen_time: datetime, serial: int) -> bytes:
    """A TimeStampResp over SHA-256(message)."""
    return stamp_digest(authority, hashlib.sha256(message).digest(), gen_time, serial)


def answer_request(request_der: bytes, authority: Authority, now: datetime, serial: int) -> bytes:
    """Answer an `application/timestamp-query` (RFC 3161 section 3.4): a granted response, or
    a rejection with the reason for requests the TSA does not serve."""

    def rejection(text: str, failure: str) -> bytes:
        status = {"status": "rejection", "status_string": [text], "fail_info": {failure}}
        return bytes(_Rejection({"status": status}).dump())

    try:
        # strict: bytes after the request are refused rather than ignored
        request = tsp.TimeStampReq.load(request_der, strict=True)
        algorithm = request["message_imprint"]["hash_algorithm"]["algorithm"].native
        digest = request["message_imprint"]["hashed_message"].native
        nonce = request["nonce"].native
        policy = request["req_policy"].native
        certificate_requested = bool(request["cert_req"].native)
        extensions = request["extensions"].native
    except (ValueError, TypeError, KeyError) as exc:
        return rejection(f"malformed TimeStampReq: {exc}", "bad_data_format")
    if algorithm != "sha256" or not isinstance(digest, bytes) or len(digest) != 32:
        return rejection("only SHA-256 message imprints are accepted", "bad_alg")
    if policy is not None and policy != authority.policy:
        return rejection(f"unknown policy {policy}", "unaccepted_policy")
    if extensions:  # this TSA supports none; RFC 3161 2.4.2 names the failure
        return rejection("no request extensions are supported", "unaccepted_extensions")
    return stamp_digest(
        authority, digest, now, serial, nonce, include_certificate=certificate_requested
    )


class _Rejection(core.Sequence):  # type: ignore[misc]
    """TimeStampResp without its OPTIONAL token (asn1crypto's class insists on one)."""

    _fields = [("status", tsp.PKIStatusInfo)]  # noqa: RUF012 - asn1crypto's declaration style


@dataclass(frozen=True)
class StampInfo:
    """What a verified token says."""

    gen_time: datetime
    serial: int
    policy: str
    tsa_certificate: x509.Certificate


def request(message: bytes, nonce: int) -> bytes:
    """A TimeStampReq (RFC 3161 section 2.4.1) for SHA-256(message), asking for the TSA's
    certificate in the token so that it verifies offline."""
    return bytes(
        tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": hashlib.sha256(message).digest(),
                },
                "nonce": nonce,
                "cert_req": True,
            }
        ).dump()
    )


def verify(
    response_der: bytes,
    message: bytes,
    ca_certificate: x509.Certificate,
    nonce: int | None = None,
) -> StampInfo:
    """Verify a TimeStampResp over ``message`` against a trusted TSA CA certificate (and, when
    given, the ``nonce`` of the request it answers). ECDSA and RSA TSAs are accepted.

    Raises :class:`VerificationError` naming the first check that fails, and
    :class:`TrustError` for material that cannot be parsed.
    """
    if not isinstance(response_der, bytes | bytearray | memoryview) or not isinstance(
        message, bytes | bytearray | memoryview
    ):
        raise TrustError("the timestamp response and the stamped data must be bytes")
    return _verified(bytes(response_der), bytes(message), ca_certificate, nonce)


# Why a memo: every bundle of a checkpoint carries that checkpoint's token, so a registry's
# pages verify the same few tokens again and again, and parsing one with asn1crypto and
# comparing its names was a quarter of an attestation page (1,000,000 entries). The result
# depends only on the arguments (validity is judged at the token's genTime, not now), which
# are the key: bytes, and a certificate that compares and hashes by its DER. Only successes
# are kept; a failing token raises again each time.
@functools.lru_cache(maxsize=1024)
def _verified(
    response_der: bytes, message: bytes, ca_certificate: x509.Certificate, nonce: int | None
) -> StampInfo:
    if len(response_der) > MAX_RESPONSE_BYTES:
        raise TrustError("the timestamp response is larger than 64 KiB")
    try:
        response = tsp.TimeStampResp.load(response_der)
        status = response["status"]["status"].native
        token = response["time_stamp_token"]
        # An absent token is a Void; .native would decode the whole token (tens of ms).
        if status not in ("granted", "granted_with_mods") or isinstance(token, core.Void):
            raise VerificationError(f"the TSA did not grant the timestamp ({status})")
        signed_data = token["content"]
        encapsulated = signed_data["encap_content_info"]
        if encapsulated["content_type"].native != "tst_info":
            raise VerificationError("the token does not carry a TSTInfo")
        content = encapsulated["content"].contents
        info = tsp.TSTInfo.load(content)
        [signer] = list(signed_data["signer_infos"])
        certificates = [c.chosen for c in signed_data["certificates"]]
    except VerificationError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise TrustError(f"the timestamp token cannot be parsed: {exc}") from exc
    try:
        return _checked(info, signer, certificates, content, message, ca_certificate, nonce)
    except TrustError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,  # a certificate of another format (OtherCertificateFormat) has no serial
        x509.InvalidVersion,  # cryptography's, for a certificate of an unknown version
        UnsupportedAlgorithm,
    ) as exc:
        # asn1crypto parses lazily: a malformed inner field fails only when it is read.
        raise TrustError(f"the timestamp token cannot be parsed: {exc}") from exc


def _checked(
    info: tsp.TSTInfo,
    signer: cms.SignerInfo,
    certificates: list[asn1_x509.Certificate],
    content: bytes,
    message: bytes,
    ca_certificate: x509.Certificate,
    nonce: int | None,
) -> StampInfo:
    """The checks of :func:`verify` on a token's parsed parts."""
    imprint = info["message_imprint"]
    if imprint["hash_algorithm"]["algorithm"].native != "sha256":
        raise VerificationError("the message imprint is not SHA-256")
    if imprint["hashed_message"].native != hashlib.sha256(message).digest():
        raise VerificationError("the token's message imprint does not match the data")
    if nonce is not None and info["nonce"].native != nonce:
        raise VerificationError("the token does not answer this request (nonce differs)")

    # Taken before the attributes are read: asn1crypto then re-checks every child for changes.
    signed_attributes = signer["signed_attrs"].contents
    sid = signer["sid"]
    if sid.name == "subject_key_identifier":  # RFC 5652 5.3 allows either form
        matching = [c for c in certificates if c.key_identifier == sid.chosen.native]
    else:
        matching = [
            c for c in certificates
            if c.serial_number == sid.chosen["serial_number"].native
            and c.issuer == sid.chosen["issuer"]
        ]  # fmt: skip
    if not matching:
        raise VerificationError("the token does not include the TSA certificate that signed it")
    tsa_der = matching[0].dump()
    tsa = x509.load_der_x509_certificate(tsa_der)
    gen_time = info["gen_time"].native
    _check_chain(tsa, ca_certificate, gen_time)

    attributes = {a["type"].native: a["values"] for a in signer["signed_attrs"]}
    if attributes.get("content_type") is None or attributes["content_type"][0].native != "tst_info":
        raise VerificationError("the signed content-type attribute is not id-ct-TSTInfo")
    digest = attributes.get("message_digest")
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise VerificationError(f"the token's digest algorithm {digest_name} is not accepted")
    if digest is None or digest[0].native != hashlib.new(digest_name, content).digest():
        raise VerificationError("the signed message-digest does not match the TSTInfo")
    ess = attributes.get("signing_certificate_v2")
    if ess is None:
        raise VerificationError("the token lacks the signingCertificateV2 (ESSCertIDv2) attribute")
    first = ess[0]["certs"][0]
    algorithm = first["hash_algorithm"]["algorithm"].native
    if algorithm not in _HASHES:
        raise VerificationError(f"the ESSCertIDv2 hash algorithm {algorithm} is not accepted")
    expected = hashlib.new(algorithm, tsa_der).digest()
    if first["cert_hash"].native != expected:
        raise VerificationError("the ESSCertIDv2 does not identify the signing certificate")

    # The signature covers the attributes' DER as received, tagged as a SET (RFC 5652 5.4);
    # untag().dump() would re-encode the whole structure.
    signed_bytes = _der(0x31, signed_attributes)
    public_key = tsa.public_key()
    chosen = _HASHES[digest_name]
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signer["signature"].native, signed_bytes, ec.ECDSA(chosen))
        elif isinstance(public_key, rsa.RSAPublicKey):
            if signer["signature_algorithm"].signature_algo != "rsassa_pkcs1v15":
                raise VerificationError("only PKCS#1 v1.5 RSA token signatures are accepted")
            public_key.verify(signer["signature"].native, signed_bytes, padding.PKCS1v15(), chosen)
        else:
            raise VerificationError("the TSA key is neither ECDSA nor RSA")
    except InvalidSignature:
        raise VerificationError("the token's CMS signature does not verify") from None
    return StampInfo(gen_time, info["serial_number"].native, info["policy"].native, tsa)


def _check_chain(tsa: x509.Certificate, ca: x509.Certificate, gen_time: datetime) -> None:
    if tsa.issuer != ca.subject:
        raise VerificationError("the TSA certificate was not issued by the trusted CA")
    try:
        tsa.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        raise VerificationError("the TSA certificate's signature does not verify") from None
    try:
        usage = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise VerificationError("the TSA certificate has no extended key usage") from None
    if not usage.critical or list(usage.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise VerificationError("the TSA certificate's only EKU must be critical timeStamping")
    for certificate, role in ((tsa, "TSA"), (ca, "CA")):
        if not certificate.not_valid_before_utc <= gen_time <= certificate.not_valid_after_utc:
            raise VerificationError(
                f"genTime {gen_time.isoformat()} is outside the {role} certificate's validity"
            )
