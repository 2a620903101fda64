"""The pieces of kafka-local that guard processes and configure listeners, alone: the
/proc state parsing, the watchdog (run as a real detached process on stand-ins for the
owner and the broker), and the listener and client settings of each security mode."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.kafka_local import listeners, processes, watchdog


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("1234 (java) S 1 1234", "S"),
        ("1234 (my (odd) name) Z 1 1234", "Z"),  # the name may hold spaces and parentheses
        ("1234 (x) ", ""),
    ],
)
def test_the_state_letter_follows_the_last_parenthesis(stat: str, state: str) -> None:
    assert processes.state_letter(stat) == state


def wait_gone(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return code
        time.sleep(0.05)
    return None


def test_the_watchdog_stops_the_broker_when_its_owner_dies(tmp_path: Path) -> None:
    owner = subprocess.Popen(["sleep", "60"])
    broker = subprocess.Popen(["sleep", "60"])
    guard = subprocess.Popen(
        [sys.executable, watchdog.__file__, str(owner.pid), str(broker.pid), "5", "-Dmarker"]
    )
    try:
        time.sleep(0.5)
        assert broker.poll() is None  # the owner lives: the broker is left alone
        owner.kill()
        owner.wait()
        assert wait_gone(broker, 10) is not None, "the broker outlived its owner"
        assert wait_gone(guard, 10) == 0, "the watchdog did not end after the broker"
    finally:
        for process in (owner, broker, guard):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_watchdog_ends_with_the_broker() -> None:
    owner = subprocess.Popen(["sleep", "60"])
    broker = subprocess.Popen(["sleep", "0.3"])
    guard = subprocess.Popen(
        [sys.executable, watchdog.__file__, str(owner.pid), str(broker.pid), "5"]
    )
    try:
        broker.wait()
        assert wait_gone(guard, 10) == 0
        assert owner.poll() is None
    finally:
        for process in (owner, guard):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_plaintext_has_one_listener_and_no_security_block(tmp_path: Path) -> None:
    settings = listeners.listener_settings("plaintext", 9092, 0, tmp_path)
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert settings["security"] == ""


@pytest.mark.parametrize(("mode", "protocol"), [("sasl_ssl", "SASL_SSL"), ("mtls", "SSL")])
def test_a_secured_broker_keeps_an_internal_plaintext_listener(
    tmp_path: Path, mode: str, protocol: str
) -> None:
    settings = listeners.listener_settings(mode, 9093, 9094, tmp_path)
    assert settings["listeners"] == f"{protocol}://127.0.0.1:9093,INTERNAL://127.0.0.1:9094"
    assert settings["inter_broker_listener"] == "INTERNAL"
    assert f"ssl.keystore.location={tmp_path / 'broker.pem'}" in settings["security"]
    assert ("ssl.client.auth=required" in settings["security"]) == (mode == "mtls")
    assert ("SCRAM-SHA-512" in settings["security"]) == (mode == "sasl_ssl")


def test_client_settings_name_what_each_mode_needs(tmp_path: Path) -> None:
    sasl, java = listeners.client_settings("sasl_ssl", "127.0.0.1:1", "pw", tmp_path)
    assert sasl == {
        "bootstrap_servers": "127.0.0.1:1",
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(tmp_path / "ca.crt"),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "sla-worker",
        "sasl_password": "pw",
    }
    assert 'password="pw";' in java[-1]
    mtls, _ = listeners.client_settings("mtls", "127.0.0.1:1", "", tmp_path)
    assert mtls["ssl_certfile"] == str(tmp_path / "client.crt")
    assert "sasl_password" not in mtls
