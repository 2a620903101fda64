"""What a run dir remembers: the running broker (`state.json`) and the last address
(`address.json`, kept across stops for `start --resume`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devtools.kafka_local.errors import KafkaLocalError
from devtools.kafka_local.processes import cmdline, marker_flag, pid_alive

State = dict[str, Any]


def state_path(home: Path) -> Path:
    return home / "state.json"


def address_path(home: Path) -> Path:
    """Where the last broker's ports are kept, so `start --resume` can reuse them."""
    return home / "address.json"


def read_state(home: Path) -> State | None:
    try:
        state = json.loads(state_path(home).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_state(home: Path, state: State) -> None:
    tmp = home / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(state_path(home))


def running_state(home: Path) -> State | None:
    """The state of a broker of ours that is alive in this run dir, else None."""
    state = read_state(home)
    if state is None:
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    if marker_flag(home) not in cmdline(pid):
        return None  # a recycled pid, not our broker
    return state


def write_address(home: Path, address: State, owner_pid: int = 0) -> None:
    """Keep the ports and the security mode of this start, for `start --resume`."""
    tmp = home / "address.json.tmp"
    tmp.write_text(json.dumps({**address, "owner_pid": owner_pid}) + "\n")
    tmp.replace(address_path(home))


def saved_owner(home: Path) -> int:
    """The --owner-pid of the last start, while that process lives: a resumed broker keeps
    the watchdog that stops it when its owner (a pytest session, say) dies."""
    try:
        owner = int(json.loads(address_path(home).read_text()).get("owner_pid") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0
    return owner if owner and pid_alive(owner) else 0


def previous_address(home: Path) -> State:
    """The ports and security mode of the last broker of `home`, whose data is still there."""
    try:
        saved = json.loads(address_path(home).read_text())
        address: State = {
            "port": int(saved["port"]),
            "controller_port": int(saved["controller_port"]),
            "internal_port": int(saved.get("internal_port") or 0),
            "security": str(saved.get("security") or "plaintext"),
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KafkaLocalError(
            f"nothing to resume in {home}: no previous broker address ({exc})"
        ) from exc
    if not (home / "data" / "meta.properties").is_file():
        raise KafkaLocalError(f"nothing to resume in {home}: its KRaft storage is gone")
    return address


def probe_port(state: State) -> int:
    """Where the readiness check speaks plain Kafka: the INTERNAL listener when secured."""
    return int(state.get("internal_port") or state["port"])
