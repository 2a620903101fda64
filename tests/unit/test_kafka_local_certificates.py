"""The throwaway CA of a secured broker makes certificates Python's ssl accepts: the
broker's for 127.0.0.1 and localhost, the client's for mTLS, and nothing more after.

Each handshake runs in memory (two SSLObjects and their BIOs), no socket, no broker.
The CA is made with openssl, as for the broker: without it this fails, as the start would.
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest

from devtools.kafka_local import certificates


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls") / "tls"
    certificates.make_certificates(directory, client=True, client_name="sla-worker")
    return directory


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str) -> None:
    """Drive a TLS handshake between two in-memory ends until both are done."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server_end = server.wrap_bio(s_in, s_out, server_side=True)
    client_end = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    done = {"server": False, "client": False}
    for _ in range(20):
        for name, end in (("client", client_end), ("server", server_end)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def broker_context(tls: Path, require_client: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls / "broker.crt", tls / "broker.key")
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(tls / "ca.crt")
    return context


def client_context(tls: Path, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    if with_certificate:
        context.load_cert_chain(tls / "client.crt", tls / "client.key")
    return context


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_a_client_trusting_the_ca_accepts_the_broker(tls: Path, name: str) -> None:
    handshake(broker_context(tls, False), client_context(tls, False), name)


def test_the_broker_certificate_is_for_loopback_only(tls: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(broker_context(tls, False), client_context(tls, False), "kafka.example")


def test_a_client_without_the_ca_refuses_the_broker(tls: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(broker_context(tls, False), ssl.create_default_context(), "localhost")


def test_mtls_accepts_the_client_certificate(tls: Path) -> None:
    handshake(broker_context(tls, True), client_context(tls, True), "localhost")


def test_mtls_refuses_a_client_without_one(tls: Path) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(broker_context(tls, True), client_context(tls, False), "localhost")


def test_keys_are_private_and_the_ca_key_is_gone(tls: Path) -> None:
    assert not (tls / "ca.key").exists()
    for key in ("broker.key", "client.key", "broker.pem", "client.pem"):
        assert stat.S_IMODE((tls / key).stat().st_mode) == 0o600, key
    pem = (tls / "broker.pem").read_text()
    assert "PRIVATE KEY" in pem and "CERTIFICATE" in pem


def test_the_ca_signs_certificates_only(tls: Path) -> None:
    arguments = certificates.ca_arguments(tls)
    assert "basicConstraints=critical,CA:TRUE" in arguments
    assert "keyUsage=critical,keyCertSign,cRLSign" in arguments
