"""Can these settings get into the brokers at all? Checked once, before anything else.

aiokafka treats every failed connection alike — a wrong password, an untrusted
certificate, a broker that is down — logs `Unable connect to ...` and ends its bootstrap
with `Unable to bootstrap from [...]`, which names none of them. The worker and the audit
therefore open one connection of their own first and, when it fails, stop with a sentence
that names the cause and the setting to check (`KafkaAccessError`). A wrong password or
certificate is a configuration error, not an outage: retrying would not help.

With mutual TLS, a broker that does not accept the client's certificate completes the
TLS 1.3 handshake and then closes the connection with an alert, which aiokafka reports as
`Connection ... closed`; a second, bare TLS connection here reads that alert back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from worker.core.errors import SlaWorkerError
from worker.settings import KafkaConnection

CHECK_TIMEOUT_SECONDS = 10.0
_API_VERSIONS_V0 = struct.pack(">hhih", 18, 0, 1, 12) + b"access-check"


class KafkaAccessError(SlaWorkerError):
    """The brokers cannot be used with these settings; the message says why."""


def bootstrap_addresses(servers: str) -> list[tuple[str, int]]:
    """`host:port` pairs of a bootstrap list (`[v6]:port` too; port 9092 when omitted)."""
    addresses = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or "]" in port:
            host, port = item, "9092"
        addresses.append((host.strip("[]"), int(port)))
    return addresses


async def check_access(settings: KafkaConnection, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """Return once one bootstrap server accepts a connection with these settings (TLS and
    SASL included); otherwise raise `KafkaAccessError` with each server's reason."""
    try:
        context = settings.ssl_context()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise KafkaAccessError(
            f"cannot load the TLS files (--ssl-cafile, --ssl-certfile, --ssl-keyfile): {exc}"
        ) from None
    failures = []
    for host, port in bootstrap_addresses(settings.bootstrap_servers):
        try:
            reason = await asyncio.wait_for(_connect(settings, context, host, port), timeout)
        except TimeoutError:
            reason = f"no answer within {timeout:.0f} s"
        if reason is None:
            return
        failures.append(f"{host}:{port}: {reason}")
    raise KafkaAccessError(
        f"cannot use the Kafka brokers with --security-protocol {settings.security_protocol}: "
        + "; ".join(failures)
    )


async def _connect(
    settings: KafkaConnection, context: ssl.SSLContext | None, host: str, port: int
) -> str | None:
    """None when a connection (TLS handshake and SASL login included) succeeds; else why."""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    try:
        connection = await create_conn(
            host,
            port,
            client_id="sla-worker-access-check",
            ssl_context=context,
            security_protocol=settings.security_protocol,
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=password,
        )
    except SaslAuthenticationFailed as exc:
        return (
            f"the broker refused the SASL login of user {settings.sasl_username!r} "
            f"({settings.sasl_mechanism}): {exc}; check --sasl-username and SLA_SASL_PASSWORD"
        )
    except UnsupportedSaslMechanismError as exc:
        return f"{exc}; check --sasl-mechanism"
    except ssl.SSLCertVerificationError as exc:
        return (
            f"the broker's TLS certificate is not trusted ({exc.verify_message}); check "
            "--ssl-cafile (the CA that signed the broker's certificate)"
        )
    except ssl.SSLError as exc:
        return f"the TLS handshake failed ({exc.reason or exc}); {_CHECK_TLS_FILES}"
    except KafkaConnectionError as exc:
        if context is None:
            return (
                f"the broker closed the connection ({exc}): does its listener speak "
                f"{settings.security_protocol}?"
            )
        alert = await _tls_alert(context, host, port)
        return (
            f"the broker closed the TLS connection ({alert or exc}): it did not accept "
            f"this client's certificate; {_CHECK_TLS_FILES}"
        )
    except (OSError, KafkaError) as exc:
        return f"unreachable ({type(exc).__name__}: {exc})"
    connection.close()
    return None


_CHECK_TLS_FILES = (
    "check --ssl-certfile and --ssl-keyfile (a client certificate signed by a CA the broker "
    "trusts, when it requires one) and --ssl-cafile"
)


async def _tls_alert(context: ssl.SSLContext, host: str, port: int) -> str | None:
    """The TLS alert a broker sends after the handshake (e.g. a client certificate it
    does not trust), read back on a bare connection; None when there is none."""
    writer = None
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context)
        writer.write(struct.pack(">i", len(_API_VERSIONS_V0)) + _API_VERSIONS_V0)
        await writer.drain()
        await reader.readexactly(4)
    except ssl.SSLError as exc:
        return str(exc.reason or exc)
    except (OSError, asyncio.IncompleteReadError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    return None
