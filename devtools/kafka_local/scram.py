"""The SCRAM-SHA-512 user of a `--security sasl_ssl` broker (RFC 5802, RFC 7677).

The user is created when the storage is formatted, given as its salted password (RFC
5802's SaltedPassword: PBKDF2-HMAC of the password) rather than the password, which would
otherwise show on the format tool's command line. Kafka derives the stored and server keys
from it; `client_key`/`stored_key`/`server_key` are here so the tests can check the
derivation against the RFCs' vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MECHANISM = "SCRAM-SHA-512"
USER = "sla-worker"
ITERATIONS = 8192
SALT_BYTES = 24


def salted_password(
    password: str, salt: bytes, iterations: int, hash_name: str = "sha512"
) -> bytes:
    """Hi(Normalize(password), salt, i) of RFC 5802 section 2.2: PBKDF2 with HMAC.

    (SASLprep normalisation is the identity for the ASCII passwords made here.)
    """
    return hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)


def client_key(salted: bytes, hash_name: str = "sha512") -> bytes:
    return hmac.digest(salted, b"Client Key", hash_name)


def stored_key(salted: bytes, hash_name: str = "sha512") -> bytes:
    return hashlib.new(hash_name, client_key(salted, hash_name)).digest()


def server_key(salted: bytes, hash_name: str = "sha512") -> bytes:
    return hmac.digest(salted, b"Server Key", hash_name)


def format_credential(user: str, salt: bytes, salted: bytes, iterations: int) -> str:
    """The `--add-scram` argument of `kafka-storage format` for a salted password."""
    return (
        f"{MECHANISM}=[name={user},salt={base64.b64encode(salt).decode()},"
        f"saltedpassword={base64.b64encode(salted).decode()},iterations={iterations}]"
    )


def scram_credential(password: str, iterations: int = ITERATIONS) -> str:
    """The broker's SCRAM user for `password`, with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    return format_credential(USER, salt, salted_password(password, salt, iterations), iterations)
