"""The watchdog of `start --owner-pid`: stops the broker when its owner dies without `stop`.

Run as a file (`python <this file> OWNER BROKER GRACE -D<marker>`), detached, so it needs
nothing but the standard library and imports nothing of the package: the marker argument
is ignored here and lets `stop` and pgrep find the watchdog.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X", "")


def stop(broker: int, grace: float) -> None:
    """SIGTERM, `grace` seconds, then SIGKILL: as `kafka-local stop` does."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.kill(broker, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while alive(broker) and time.monotonic() < end:
            time.sleep(0.2)
        if not alive(broker):
            return


def watch(owner: int, broker: int, grace: float, poll: float = 1.0) -> None:
    while alive(broker):
        if not alive(owner):
            stop(broker, grace)
            return
        time.sleep(poll)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    watch(int(argv[0]), int(argv[1]), float(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
