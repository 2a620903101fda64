"""The access check at start: bootstrap lists, and failures found before any broker is
asked (the failures brokers give are in tests/integration/test_secured_kafka.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.kafka.access import KafkaAccessError, bootstrap_addresses, check_access
from worker.settings import KafkaConnection


def test_bootstrap_addresses() -> None:
    assert bootstrap_addresses("a:9093, b ,[::1]:9094,") == [
        ("a", 9093),
        ("b", 9092),
        ("::1", 9094),
    ]


async def test_tls_files_that_cannot_be_loaded_are_named(tmp_path: Path) -> None:
    settings = KafkaConnection(security_protocol="SSL", ssl_cafile=tmp_path / "missing.crt")
    with pytest.raises(KafkaAccessError, match="cannot load the TLS files"):
        await check_access(settings)


async def test_an_unreachable_broker_is_reported_with_its_address() -> None:
    with pytest.raises(KafkaAccessError, match=r"127\.0\.0\.1:1: unreachable"):
        await check_access(KafkaConnection(bootstrap_servers="127.0.0.1:1"), timeout=5)
