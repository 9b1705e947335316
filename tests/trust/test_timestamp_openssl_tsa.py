"""Tokens from another TSA implementation: OpenSSL's own `openssl ts -reply`, with an RSA key,
answering our TimeStampReq. The checker accepts them, and still refuses tampering, a wrong
nonce and a CA that did not issue the TSA certificate."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sqm.trust import timestamp
from sqm.trust.errors import VerificationError

MESSAGE = b"origin.example/log\n42\nAAAA\n"
NONCE = 0x5EED_1234_ABCD


def _rsa_tsa(now: datetime) -> tuple[x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]:
    ca_key, key = (rsa.generate_private_key(65537, 2048) for _ in range(2))
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpenSSL TSA test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    tsa = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpenSSL TSA")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return ca, tsa, key


@pytest.fixture(scope="module")
def openssl_token(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, x509.Certificate]:
    folder = tmp_path_factory.mktemp("openssl-tsa")
    ca, tsa, key = _rsa_tsa(datetime.now(UTC))
    (folder / "tsa.crt").write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    (folder / "tsa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "serial").write_text("01\n")
    (folder / "tsa.cnf").write_text(
        "[ tsa ]\ndefault_tsa = tsa_config\n[ tsa_config ]\n"
        f"serial = {folder / 'serial'}\nsigner_digest = sha256\n"
        "default_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\n"
        "ess_cert_id_alg = sha256\ness_cert_id_chain = no\n"
    )
    (folder / "request.tsq").write_bytes(timestamp.request(MESSAGE, NONCE))
    subprocess.run(
        [
            "openssl", "ts", "-reply", "-config", str(folder / "tsa.cnf"),
            "-queryfile", str(folder / "request.tsq"), "-signer", str(folder / "tsa.crt"),
            "-inkey", str(folder / "tsa.key"), "-out", str(folder / "reply.tsr"),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return (folder / "reply.tsr").read_bytes(), ca


def test_an_openssl_rsa_token_verifies(openssl_token: tuple[bytes, x509.Certificate]) -> None:
    token, ca = openssl_token
    info = timestamp.verify(token, MESSAGE, ca, nonce=NONCE)
    assert info.policy == "1.2.3.4.1"
    assert abs(info.gen_time - datetime.now(UTC)) < timedelta(minutes=5)


def test_other_data_a_wrong_nonce_or_another_ca_fail(
    openssl_token: tuple[bytes, x509.Certificate],
) -> None:
    token, _ = openssl_token
    ca_of_someone_else = _rsa_tsa(datetime.now(UTC))[0]
    with pytest.raises(VerificationError, match="message imprint"):
        timestamp.verify(token, MESSAGE + b"!", openssl_token[1], nonce=NONCE)
    with pytest.raises(VerificationError, match="nonce"):
        timestamp.verify(token, MESSAGE, openssl_token[1], nonce=NONCE + 1)
    with pytest.raises(VerificationError, match="signature does not verify"):
        timestamp.verify(token, MESSAGE, ca_of_someone_else)
