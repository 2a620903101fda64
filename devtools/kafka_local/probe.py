"""Is the broker ready? A Kafka Metadata v1 request, answered with the broker list.

An answer proves the broker speaks the Kafka protocol on the port and has enabled request
processing, which a KRaft broker does only after it is caught up and unfenced. Encoding
the request and decoding the answer are pure (`metadata_request`, `parse_brokers`); only
`metadata_brokers` talks to a socket.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

API_METADATA = 3
API_VERSION = 1
CLIENT_ID = b"kafka-local"


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


def metadata_request(correlation_id: int = 1, client_id: bytes = CLIENT_ID) -> bytes:
    """The framed request: size, header v1 (api key, version, correlation id, client id),
    and an empty topic array, which asks for brokers and controller only."""
    header = struct.pack(">hhih", API_METADATA, API_VERSION, correlation_id, len(client_id))
    body = struct.pack(">i", 0)
    payload = header + client_id + body
    return struct.pack(">i", len(payload)) + payload


def parse_brokers(response: bytes) -> list[BrokerInfo]:
    """The brokers of a Metadata v1 response body (after the size prefix).

    Raises struct.error on a truncated answer and UnicodeDecodeError on a host that is not
    UTF-8; a null rack (length -1) is None. What follows the broker array (controller id,
    topics) is not needed and not read.
    """
    offset = 4  # correlation id
    (count,) = struct.unpack_from(">i", response, offset)
    offset += 4
    brokers = []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", response, offset)
        offset += 6
        if host_len < 0 or offset + host_len > len(response):
            raise struct.error("host runs past the end of the response")
        host = response[offset : offset + host_len].decode()
        offset += host_len
        port, rack_len = struct.unpack_from(">ih", response, offset)
        offset += 6
        rack = None
        if rack_len >= 0:
            if offset + rack_len > len(response):
                raise struct.error("rack runs past the end of the response")
            rack = response[offset : offset + rack_len].decode()
            offset += rack_len
        brokers.append(BrokerInfo(node_id, host, port, rack))
    return brokers


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def metadata_brokers(host: str, port: int, timeout: float = 3.0) -> list[BrokerInfo]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(metadata_request())
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        return parse_brokers(_recv_exact(sock, size))


def broker_ready(host: str, port: int, node_id: int) -> bool:
    try:
        return any(b.node_id == node_id for b in metadata_brokers(host, port))
    except (OSError, struct.error, UnicodeDecodeError):
        return False
