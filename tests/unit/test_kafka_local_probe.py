"""The readiness probe: its Metadata v1 request, byte for byte, and its reading of
answers, crafted here, whole, with racks, truncated and served by a fake broker."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from devtools.kafka_local import probe
from devtools.kafka_local.probe import BrokerInfo


def string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def response(*brokers: BrokerInfo, correlation_id: int = 1) -> bytes:
    """A Metadata v1 response body: brokers, controller id, no topics."""
    body = struct.pack(">ii", correlation_id, len(brokers))
    for broker in brokers:
        body += struct.pack(">i", broker.node_id) + string(broker.host)
        body += struct.pack(">i", broker.port) + string(broker.rack)
    return body + struct.pack(">ii", 1, 0)


def test_the_request_is_metadata_v1_with_no_topics() -> None:
    request = probe.metadata_request(correlation_id=7, client_id=b"kl")
    assert request == (
        struct.pack(">i", 2 + 2 + 4 + 2 + 2 + 4)  # size of what follows
        + struct.pack(">hhi", 3, 1, 7)  # Metadata, v1, correlation id
        + struct.pack(">h", 2)
        + b"kl"
        + struct.pack(">i", 0)  # an empty topic array
    )


def test_brokers_with_and_without_racks() -> None:
    brokers = [BrokerInfo(1, "127.0.0.1", 39092), BrokerInfo(2, "kafka-2", 9093, "rack-b")]
    assert probe.parse_brokers(response(*brokers)) == brokers


def test_no_brokers() -> None:
    assert probe.parse_brokers(response()) == []


@pytest.mark.parametrize("cut", [3, 8, 12, 20, 25])
def test_a_truncated_answer_is_an_error_not_a_wrong_list(cut: int) -> None:
    whole = response(BrokerInfo(1, "127.0.0.1", 39092, "r1"))
    with pytest.raises(struct.error):
        probe.parse_brokers(whole[:cut])


def test_a_host_that_is_not_utf8() -> None:
    body = struct.pack(">ii", 1, 1) + struct.pack(">ih", 1, 2) + b"\xff\xfe"
    body += struct.pack(">ih", 9092, -1)
    with pytest.raises(UnicodeDecodeError):
        probe.parse_brokers(body)


@pytest.fixture
def fake_broker() -> Iterator[tuple[int, list[bytes]]]:
    """A one-connection Kafka stand-in on 127.0.0.1: reads one request, answers broker 1."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            size = struct.unpack(">i", connection.recv(4))[0]
            received.append(connection.recv(size))
            answer = response(BrokerInfo(1, "127.0.0.1", 1234))
            connection.sendall(struct.pack(">i", len(answer)) + answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    thread.join(5)
    server.close()


def test_ready_when_the_broker_lists_our_node(fake_broker: tuple[int, list[bytes]]) -> None:
    port, received = fake_broker
    assert probe.broker_ready("127.0.0.1", port, node_id=1)
    assert received == [probe.metadata_request()[4:]]


def test_not_ready_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        assert not probe.broker_ready("127.0.0.1", port, node_id=1)
