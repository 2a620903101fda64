"""One start of the broker: storage formatted (or kept, resuming), the JVM launched, and
the wait until it answers Kafka requests; the watchdog of an owned broker."""

from __future__ import annotations

import base64
import secrets
import shutil
import string
import subprocess
import sys
import time
import uuid
from pathlib import Path

from devtools.kafka_local import watchdog
from devtools.kafka_local.certificates import make_certificates
from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.java import java_bin
from devtools.kafka_local.layout import HOST, LOG4J_CONFIG, SERVER_TEMPLATE
from devtools.kafka_local.listeners import listener_settings, tls_dir, write_client_config
from devtools.kafka_local.probe import broker_ready
from devtools.kafka_local.processes import free_ports, marker_flag, port_listening
from devtools.kafka_local.scram import USER, scram_credential
from devtools.kafka_local.state import State, probe_port, saved_owner, write_address, write_state

NODE_ID = 1
LOG_TAIL_LINES = 60


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:]) or f"({path} is empty)"


class BrokerExited(KafkaLocalError):
    def __init__(self, message: str, log_path: Path) -> None:
        self.log_path = log_path
        super().__init__(f"{message}; last lines of {log_path}:\n{log_tail(log_path)}")

    def port_clash(self) -> bool:
        text = log_tail(self.log_path, 400)
        return "Address already in use" in text or "BindException" in text


def cluster_id() -> str:
    """A random Kafka cluster id: 16 bytes, URL-safe base64, unpadded, not starting with '-'."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def java_command(
    java: str, libs: Path, home: Path, main: str, heap: str, *, tool: bool = False
) -> list[str]:
    # A short-lived tool starts faster with the C1 compiler only; the broker keeps C2 and G1.
    jit_gc = (
        ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        if tool
        else ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
    )
    return [
        java,
        f"-Xmx{heap}",
        "-Xms64m",
        *jit_gc,
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={home / 'logs'}",
        marker_flag(home),
        "-cp",
        f"{libs}/*",
        main,
    ]


def spawn_watchdog(owner_pid: int, broker_pid: int, home: Path, grace: float) -> int:
    """A detached process that stops the broker if `owner_pid` dies without calling stop."""
    process = subprocess.Popen(
        [
            sys.executable,
            watchdog.__file__,
            str(owner_pid),
            str(broker_pid),
            str(grace),
            marker_flag(home),  # ignored by the watchdog; lets stop/pgrep find it
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return process.pid


def launch(
    home: Path,
    libs: Path,
    version: str,
    heap: str,
    timeout: float,
    security: str = "plaintext",
    resume: State | None = None,
) -> State:
    """Start the broker and wait until it serves metadata requests.

    A fresh start formats new storage on free ports (and, secured, makes new certificates
    and a new SCRAM password); `resume` names the previous ports and mode and keeps the
    storage and certificates, so topics, committed offsets and transactions survive.
    """
    java = java_bin()
    data_dir = home / "data"
    tls = tls_dir(home)
    password = ""
    if resume is None:
        secured = security != "plaintext"
        port, controller_port, *internal = free_ports(3 if secured else 2)
        internal_port = internal[0] if internal else 0
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(home / "logs", ignore_errors=True)
        data_dir.mkdir(parents=True)
        for stale in ("client.json", "client.properties"):
            (home / stale).unlink(missing_ok=True)
        if secured:
            make_certificates(tls, client=security == "mtls", client_name=USER)
        else:
            shutil.rmtree(tls, ignore_errors=True)
        if security == "sasl_ssl":
            password = secrets.token_urlsafe(24)
    else:
        port, controller_port = int(resume["port"]), int(resume["controller_port"])
        internal_port = int(resume["internal_port"])
    address: State = {
        "port": port,
        "controller_port": controller_port,
        "internal_port": internal_port,
        "security": security,
    }
    template = string.Template(SERVER_TEMPLATE.read_text())
    properties = home / "server.properties"
    properties.write_text(
        template.substitute(
            controller_port=controller_port,
            data_dir=data_dir,
            **listener_settings(security, port, internal_port, tls),
        )
    )
    # A resume keeps the owner of the original start (its watchdog), also if it fails.
    write_address(home, address, saved_owner(home) if resume is not None else 0)
    log_path = home / "broker.log"

    with open(log_path, "w" if resume is None else "a") as log:
        if resume is not None:
            log.write(f"\n--- kafka-local: resumed at {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n")
            log.flush()
            formatted = subprocess.CompletedProcess[bytes]([], 0)
        else:
            formatted = subprocess.run(
                [
                    *java_command(java, libs, home, "kafka.tools.StorageTool", "256m", tool=True),
                    "format",
                    "--cluster-id",
                    cluster_id(),
                    "--config",
                    str(properties),
                    # The SCRAM user exists from the first instant: no admin step after.
                    *(["--add-scram", scram_credential(password)] if password else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
    if formatted.returncode != 0:
        raise KafkaLocalError(
            f"formatting KRaft storage failed (exit {formatted.returncode}); "
            f"{log_path}:\n{log_tail(log_path)}"
        )

    with open(log_path, "a") as log:
        process = subprocess.Popen(
            [*java_command(java, libs, home, "kafka.Kafka", heap), str(properties)],
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    state: State = {
        "pid": process.pid,
        **address,
        "bootstrap": f"{HOST}:{port}",
        "version": version,
        "java": java,
        "log": str(log_path),
        "started_at": time.time(),
    }
    write_state(home, state)

    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise BrokerExited(f"the broker exited with code {code}", log_path)
        if broker_ready(HOST, probe_port(state), NODE_ID) and port_listening(port):
            if resume is None:
                write_client_config(home, security, f"{HOST}:{port}", password)
            return state
        if time.monotonic() > deadline:
            raise KafkaLocalError(
                f"the broker did not accept Kafka requests on {HOST}:{port} within "
                f"{timeout:.0f} s; last lines of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.25)
