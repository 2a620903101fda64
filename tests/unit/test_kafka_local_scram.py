"""The SCRAM user of a sasl_ssl broker is derived as RFC 5802 and RFC 7677 say.

The RFCs' example exchanges (SCRAM-SHA-1 in RFC 5802 section 5, SCRAM-SHA-256 in RFC 7677
section 3) fix the password, salt and iteration count; the client proof and server
signature they print follow from the salted password only through the keys derived here.
Kafka's SCRAM-SHA-512 is the same construction with SHA-512.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from devtools.kafka_local import scram


def proof_and_signature(
    hash_name: str, password: str, salt_b64: str, iterations: int, auth_message: str
) -> tuple[str, str]:
    salted = scram.salted_password(password, base64.b64decode(salt_b64), iterations, hash_name)
    stored = scram.stored_key(salted, hash_name)
    client_signature = hmac.digest(stored, auth_message.encode(), hash_name)
    client_key = scram.client_key(salted, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
    server = hmac.digest(scram.server_key(salted, hash_name), auth_message.encode(), hash_name)
    return base64.b64encode(proof).decode(), base64.b64encode(server).decode()


@pytest.mark.parametrize(
    ("hash_name", "client_nonce", "server_nonce", "salt", "proof", "signature"),
    [
        pytest.param(
            "sha1",
            "fyko+d2lbbFgONRv9qkxdawL",
            "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
            "QSXCR+Q6sek8bf92",
            "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            id="RFC 5802 SCRAM-SHA-1",
        ),
        pytest.param(
            "sha256",
            "rOprNGfwEbeRWgbNEkqO",
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            id="RFC 7677 SCRAM-SHA-256",
        ),
    ],
)
def test_the_rfc_examples(
    hash_name: str, client_nonce: str, server_nonce: str, salt: str, proof: str, signature: str
) -> None:
    auth_message = (
        f"n=user,r={client_nonce},r={server_nonce},s={salt},i=4096,c=biws,r={server_nonce}"
    )
    assert proof_and_signature(hash_name, "pencil", salt, 4096, auth_message) == (
        proof,
        signature,
    )


def test_the_credential_names_the_salted_password_not_the_password() -> None:
    salt = bytes(range(24))
    salted = scram.salted_password("secret", salt, 8192)
    text = scram.format_credential("sla-worker", salt, salted, 8192)
    assert text == (
        f"SCRAM-SHA-512=[name=sla-worker,salt={base64.b64encode(salt).decode()},"
        f"saltedpassword={base64.b64encode(salted).decode()},iterations=8192]"
    )
    assert "secret" not in text
    assert salted == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 8192)


def test_a_fresh_credential_has_a_fresh_salt_that_reproduces_its_salted_password() -> None:
    pattern = (
        r"SCRAM-SHA-512=\[name=sla-worker,salt=([^,]+),saltedpassword=([^,]+),iterations=(\d+)\]"
    )
    first = re.fullmatch(pattern, scram.scram_credential("pw"))
    second = re.fullmatch(pattern, scram.scram_credential("pw"))
    assert first and second
    assert first.group(1) != second.group(1)
    salt, salted = base64.b64decode(first.group(1)), base64.b64decode(first.group(2))
    assert len(salt) == scram.SALT_BYTES
    assert salted == scram.salted_password("pw", salt, int(first.group(3)))
