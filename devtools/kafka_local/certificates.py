"""A throwaway certificate authority for a secured broker, made with openssl.

Each fresh secured start makes a new CA, the broker's certificate (for 127.0.0.1 and
localhost) and, for mTLS, the client's; then deletes the CA's key, so nobody can issue
more. Keys are EC P-256, unencrypted PKCS#8: what Kafka's PEM stores and Python's ssl
read. The broker reads PEM stores: `broker.pem` is its key and certificate.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from devtools.kafka_local.errors import KafkaLocalError

CERT_DAYS = 30
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
BROKER_EXTENSIONS = (
    "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
)
CLIENT_EXTENSIONS = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"


def openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise KafkaLocalError("openssl is not installed: needed for --security sasl_ssl|mtls")
    done = subprocess.run(
        ["openssl", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise KafkaLocalError(f"openssl {args[0]} failed (exit {done.returncode}):\n{done.stdout}")


def private(path: Path) -> Path:
    """`path`, readable by its owner only (keys, passwords)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    return path


def ca_arguments(tls: Path) -> list[str]:
    """`openssl req -x509` arguments for a self-signed CA that may sign certificates only."""
    return [
        "req",
        "-x509",
        *EC_KEY,
        "-keyout",
        str(tls / "ca.key"),
        "-out",
        str(tls / "ca.crt"),
        "-days",
        str(CERT_DAYS),
        "-subj",
        "/CN=kafka-local CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]


def signed_certificate(tls: Path, name: str, subject: str, extensions: str) -> None:
    """`<name>.key` and `<name>.crt`, signed by the CA in `tls`."""
    key, csr, ext = tls / f"{name}.key", tls / f"{name}.csr", tls / f"{name}.ext"
    private(key)
    ext.write_text(extensions)
    openssl("req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(csr), "-subj", subject)
    signing = ["-CA", str(tls / "ca.crt"), "-CAkey", str(tls / "ca.key")]
    serial = ["-set_serial", str(secrets.randbits(63)), "-days", str(CERT_DAYS)]
    out = ["-extfile", str(ext), "-out", str(tls / f"{name}.crt")]
    openssl("x509", "-req", "-in", str(csr), *signing, *serial, *out)
    csr.unlink()
    ext.unlink()


def make_certificates(tls: Path, client: bool, client_name: str) -> None:
    """A fresh CA in `tls`, the broker's certificate, and for mTLS the client's
    (CN=`client_name`); `<name>.pem` holds key and certificate for Java's PEM stores."""
    shutil.rmtree(tls, ignore_errors=True)
    tls.mkdir(parents=True)
    private(tls / "ca.key")
    openssl(*ca_arguments(tls))
    names = [("broker", "/CN=localhost", BROKER_EXTENSIONS)]
    if client:
        names.append(("client", f"/CN={client_name}", CLIENT_EXTENSIONS))
    for name, subject, extensions in names:
        signed_certificate(tls, name, subject, extensions)
        private(tls / f"{name}.pem").write_text(
            (tls / f"{name}.key").read_text() + (tls / f"{name}.crt").read_text()
        )
    # The CA's key is needed only to sign the ones above: nobody can issue more.
    (tls / "ca.key").unlink()
