"""RFC 3161: our TSA's tokens pass openssl and rfc3161-client; our checker closes their gaps."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc3161_client
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization

from sqm.trust import TrustError, VerificationError
from sqm.trust import timestamp as ts

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DATA = b"registry.sqm.example/log/2026\n42\nAAAA\n"


@pytest.fixture(scope="module")
def authority() -> ts.Authority:
    return ts.create_authority("SQM test", NOW - timedelta(days=30))[0]


def _openssl_verify(
    tmp: Path, response: bytes, data: bytes, ca_pem: bytes
) -> subprocess.CompletedProcess[str]:
    (tmp / "data").write_bytes(data)
    (tmp / "token.tsr").write_bytes(response)
    (tmp / "ca.pem").write_bytes(ca_pem)
    command = [
        "openssl",
        "ts",
        "-verify",
        "-data",
        str(tmp / "data"),
        "-in",
        str(tmp / "token.tsr"),
        "-CAfile",
        str(tmp / "ca.pem"),
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_openssl_verifies_our_token_and_rejects_other_data(
    authority: ts.Authority, tmp_path: Path
) -> None:
    response = ts.stamp(authority, DATA, NOW, 7)
    result = _openssl_verify(tmp_path, response, DATA, authority.ca_pem())
    assert result.returncode == 0 and "Verification: OK" in result.stdout
    tampered = _openssl_verify(tmp_path, response, DATA + b"x", authority.ca_pem())
    assert tampered.returncode != 0 and "FAILED" in tampered.stdout


@pytest.mark.parametrize(
    ("serial", "nonce", "when"),
    [(1, None, NOW), (2**70 + 5, 2**63 - 1, NOW), (128, 0, datetime(2051, 1, 2, 3, 4, 5, 6, UTC))],
)
def test_our_response_is_the_der_asn1crypto_builds(
    authority: ts.Authority, serial: int, nonce: int | None, when: datetime
) -> None:
    # The response is assembled by hand from DER parts: every layer must be exactly what
    # asn1crypto encodes from the same values (DER has one encoding per value, X.690 10).
    digest = hashlib.sha256(DATA).digest()
    response = ts.stamp_digest(authority, digest, when, serial, nonce)
    parsed = tsp.TimeStampResp.load(response)
    signed = parsed["time_stamp_token"]["content"]
    content = signed["encap_content_info"]["content"].contents
    certificate = asn1_x509.Certificate.load(
        authority.certificate.public_bytes(serialization.Encoding.DER)
    )
    info = {
        "version": "v1",
        "policy": authority.policy,
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
        "serial_number": serial,
        "gen_time": when.replace(microsecond=0),
        "accuracy": {"seconds": 1},
        "tsa": asn1_x509.GeneralName({"directory_name": certificate.subject}),
    }
    if nonce is not None:
        info["nonce"] = nonce
    assert content == tsp.TSTInfo(info).dump()
    attributes = signed["signer_infos"][0]["signed_attrs"]
    assert [a["type"].native for a in attributes] == [
        "content_type",
        "signing_time",
        "message_digest",
        "signing_certificate_v2",
    ]
    time_choice = "utc_time" if when.year < 2050 else "generalized_time"
    expected = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "signing_time", "values": [cms.Time({time_choice: info["gen_time"]})]},
            {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
            attributes[3],
        ]
    )
    assert attributes.contents == expected.contents
    assert parsed.dump(force=True) == response
    if when == NOW:  # the TSA certificate is not valid in 2051
        assert ts.verify(response, DATA, authority.ca_certificate).serial == serial


def test_rfc3161_client_verifies_our_token(authority: ts.Authority) -> None:
    response = rfc3161_client.decode_timestamp_response(ts.stamp(authority, DATA, NOW, 8))
    verifier = (
        rfc3161_client.VerifierBuilder().add_root_certificate(authority.ca_certificate).build()
    )
    verifier.verify_message(response, DATA)
    with pytest.raises(rfc3161_client.VerificationError):
        verifier.verify_message(response, DATA + b"x")


def test_our_checker_accepts_and_reports(authority: ts.Authority) -> None:
    info = ts.verify(ts.stamp(authority, DATA, NOW, 9), DATA, authority.ca_certificate)
    assert info.gen_time == NOW and info.serial == 9 and info.policy == ts.DEFAULT_POLICY


def test_our_checker_rejects_what_the_others_miss(authority: ts.Authority) -> None:
    no_ess = ts.stamp_digest(authority, hashlib.sha256(DATA).digest(), NOW, 10, include_ess=False)
    with pytest.raises(VerificationError, match="ESSCertIDv2"):
        ts.verify(no_ess, DATA, authority.ca_certificate)
    backdated = ts.stamp(authority, DATA, NOW - timedelta(days=365), 11)
    with pytest.raises(VerificationError, match="outside the TSA certificate's validity"):
        ts.verify(backdated, DATA, authority.ca_certificate)


def test_a_verified_token_is_remembered_only_for_the_same_inputs(
    authority: ts.Authority,
) -> None:
    # Pages verify the same checkpoint tokens again and again: a success is remembered, but
    # only for the very same token, data, CA and nonce.
    response = ts.stamp(authority, DATA, NOW, 13)
    first = ts.verify(response, DATA, authority.ca_certificate)
    assert ts.verify(bytes(bytearray(response)), DATA, authority.ca_certificate) is first
    with pytest.raises(VerificationError, match="imprint"):
        ts.verify(response, DATA + b"x", authority.ca_certificate)
    stranger = ts.create_authority("Other", NOW - timedelta(days=30))[0]
    with pytest.raises(VerificationError, match="not issued by the trusted CA"):
        ts.verify(response, DATA, stranger.ca_certificate)
    with pytest.raises(VerificationError, match="nonce"):
        ts.verify(response, DATA, authority.ca_certificate, nonce=1)
    assert ts.verify(response, DATA, authority.ca_certificate) is first
    for wrong in (response.hex(), len(response)):
        with pytest.raises(TrustError, match="must be bytes"):
            ts.verify(wrong, DATA, authority.ca_certificate)  # type: ignore[arg-type]


def test_our_checker_rejects_wrong_data_ca_and_garbage(authority: ts.Authority) -> None:
    response = ts.stamp(authority, DATA, NOW, 12)
    with pytest.raises(VerificationError, match="imprint"):
        ts.verify(response, DATA + b"x", authority.ca_certificate)
    stranger = ts.create_authority("Other", NOW - timedelta(days=30))[0]
    with pytest.raises(VerificationError, match="not issued by the trusted CA"):
        ts.verify(response, DATA, stranger.ca_certificate)
    with pytest.raises(TrustError):
        ts.verify(b"\x30\x03garbage", DATA, authority.ca_certificate)
    flipped = bytearray(response)
    flipped[-5] ^= 0x01  # inside the ECDSA signature
    with pytest.raises(TrustError):
        ts.verify(bytes(flipped), DATA, authority.ca_certificate)


def test_timestamp_query_from_openssl_is_answered(authority: ts.Authority, tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(DATA)
    query = [
        "openssl",
        "ts",
        "-query",
        "-data",
        str(tmp_path / "data"),
        "-sha256",
        "-cert",
        "-out",
        str(tmp_path / "req.tsq"),
    ]
    subprocess.run(query, check=True, capture_output=True)
    response = ts.answer_request((tmp_path / "req.tsq").read_bytes(), authority, NOW, 13)
    (tmp_path / "resp.tsr").write_bytes(response)
    (tmp_path / "ca.pem").write_bytes(authority.ca_pem())
    verify = [
        "openssl",
        "ts",
        "-verify",
        "-queryfile",
        str(tmp_path / "req.tsq"),
        "-in",
        str(tmp_path / "resp.tsr"),
        "-CAfile",
        str(tmp_path / "ca.pem"),
    ]
    result = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unsupported_requests_are_rejected_with_a_reason(
    authority: ts.Authority, tmp_path: Path
) -> None:
    (tmp_path / "data").write_bytes(DATA)
    query = [
        "openssl",
        "ts",
        "-query",
        "-data",
        str(tmp_path / "data"),
        "-sha1",
        "-out",
        str(tmp_path / "req.tsq"),
    ]
    subprocess.run(query, check=True, capture_output=True)
    for request, reason in (
        ((tmp_path / "req.tsq").read_bytes(), "unsupported algorithm"),
        (b"not DER", ""),
    ):
        (tmp_path / "resp.tsr").write_bytes(ts.answer_request(request, authority, NOW, 14))
        read = ["openssl", "ts", "-reply", "-in", str(tmp_path / "resp.tsr"), "-text"]
        text = subprocess.run(read, capture_output=True, text=True, check=True).stdout
        assert "Status: Rejected" in text
        assert reason in text


def _request(**fields: object) -> bytes:
    imprint = {
        "hash_algorithm": {"algorithm": "sha256"},
        "hashed_message": hashlib.sha256(DATA).digest(),
    }
    return bytes(tsp.TimeStampReq({"version": "v1", "message_imprint": imprint, **fields}).dump())


def _status(response: bytes) -> str:
    return str(tsp.TimeStampResp.load(response)["status"]["status"].native)


@pytest.mark.parametrize("nonce", [-5, -128, -129, 0, 255, 2**200, -(2**200)])
def test_any_nonce_is_echoed_exactly(authority: ts.Authority, nonce: int) -> None:
    response = ts.answer_request(_request(nonce=nonce, cert_req=True), authority, NOW, 15)
    assert _status(response) == "granted"
    assert ts.verify(response, DATA, authority.ca_certificate, nonce=nonce).serial == 15


def test_the_certificate_comes_only_when_requested(authority: ts.Authority) -> None:
    """RFC 3161 2.4.1: without certReq (or with it false) the certificates field MUST NOT be
    present; the checker then has no certificate to check the token with."""
    for fields, included in (({"cert_req": True}, 1), ({"cert_req": False}, 0), ({}, 0)):
        response = ts.answer_request(_request(**fields), authority, NOW, 16)
        signed = tsp.TimeStampResp.load(response)["time_stamp_token"]["content"]
        certificates = signed["certificates"]
        assert (0 if isinstance(certificates, type(None)) else len(certificates or [])) == included
    with pytest.raises(VerificationError, match="does not include the TSA certificate"):
        ts.verify(ts.answer_request(_request(), authority, NOW, 17), DATA, authority.ca_certificate)


@pytest.mark.parametrize(
    ("request_der", "reason"),
    [
        (lambda: _request(cert_req=True) + b"\x00\x00", "malformed TimeStampReq"),
        (
            lambda: _request(
                extensions=[{"extn_id": "1.2.3.4", "critical": False, "extn_value": b"\x05\x00"}]
            ),
            "no request extensions are supported",
        ),
    ],
)
def test_requests_it_cannot_honour_are_rejected(
    authority: ts.Authority, request_der: object, reason: str, tmp_path: Path
) -> None:
    response = ts.answer_request(request_der(), authority, NOW, 18)  # type: ignore[operator]
    (tmp_path / "resp.tsr").write_bytes(response)
    read = ["openssl", "ts", "-reply", "-in", str(tmp_path / "resp.tsr"), "-text"]
    text = subprocess.run(read, capture_output=True, text=True, check=True).stdout
    assert "Status: Rejected" in text and reason in text


def test_a_signer_named_by_its_key_identifier_is_found(authority: ts.Authority) -> None:
    """RFC 5652 5.3: a SignerInfo names its certificate by issuer and serial, or by subject key
    identifier; the sid is outside the signed attributes, so the signature still holds."""
    response = tsp.TimeStampResp.load(ts.stamp(authority, DATA, NOW, 19))
    signer = response["time_stamp_token"]["content"]["signer_infos"][0]
    ski = asn1_x509.Certificate.load(
        authority.certificate.public_bytes(serialization.Encoding.DER)
    ).key_identifier
    signer["sid"] = cms.SignerIdentifier({"subject_key_identifier": ski})
    signer["version"] = "v3"
    assert ts.verify(response.dump(force=True), DATA, authority.ca_certificate).serial == 19
    signer["sid"] = cms.SignerIdentifier({"subject_key_identifier": b"\x01" * 20})
    with pytest.raises(VerificationError, match="does not include the TSA certificate"):
        ts.verify(response.dump(force=True), DATA, authority.ca_certificate)


def test_an_unknown_ess_hash_is_a_verification_error(authority: ts.Authority) -> None:
    response = tsp.TimeStampResp.load(ts.stamp(authority, DATA, NOW, 20))
    signer = response["time_stamp_token"]["content"]["signer_infos"][0]
    for attribute in signer["signed_attrs"]:
        if attribute["type"].native == "signing_certificate_v2":
            attribute["values"][0]["certs"][0]["hash_algorithm"] = {"algorithm": "1.2.3.4"}
    with pytest.raises(VerificationError, match=r"hash algorithm 1\.2\.3\.4 is not accepted"):
        ts.verify(response.dump(force=True), DATA, authority.ca_certificate)


@pytest.mark.parametrize(
    "asset",
    ["token-with-a-certificate-of-another-format", "token-with-a-certificate-of-unknown-version"],
)
def test_a_token_of_an_odd_shape_is_a_trust_error(authority: ts.Authority, asset: str) -> None:
    """Found by mutating tokens: asn1crypto and cryptography raise their own errors deep in
    such tokens (AttributeError, InvalidVersion), which reached `sqm verify` as a traceback
    and an external TSA's answer as a 500."""
    token = (Path(__file__).parent / "assets" / f"{asset}.der").read_bytes()
    with pytest.raises(TrustError, match="cannot be parsed"):
        ts.verify(token, b"checkpoint", authority.ca_certificate)
