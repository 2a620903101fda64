"""The composition root: the one place where the replay, the audit and the live worker
are built and connected to their inputs and outputs.

`worker/cli.py` parses the command line and calls one `run` here per command; every
command's policy comes from `read_policy` below (a file, or the built-in presets). What
each one builds, in order:

- `sla-worker replay` (`replay.py`): an `Engine` on the policy, a `Replay` fed by the
  events file; warnings and breaches to `--output` as JSON Lines, rejections to
  `--rejects` or stderr.
- `sla-worker audit` (`audit.py`): the `--output` and `--events` files, an `Audit`
  (`worker/audit.py`) fed from Kafka's history (`worker/kafka/history.py`), the exit
  status from `--verify`.
- `sla-worker worker` (`live.py`): JSON logs, the policy, the access check, the topics,
  `Metrics`, the Kafka clients (`worker/kafka/clients.py`) and, with `--state-dir`, the
  local snapshots (`worker/kafka/snapshot.py`), handed to the `LiveWorker`
  (`worker/kafka/service.py`), the HTTP server
  (`worker/kafka/web.py`), SIGTERM/SIGINT to stop, SIGHUP to reload the policy.

`audit.py` and `live.py` load aiokafka and aiohttp, so the command line imports them
only for their commands (hence a package, not one module). Only construction and wiring
live here; the rules stay in `worker/core/`, `worker/replay.py`, `worker/audit.py` and
`worker/kafka/`. `report`, `policies`, `schemas` and `demo` have nothing to wire: the
command line calls their modules directly.
"""

from __future__ import annotations

from pathlib import Path

from worker.core.policy import Policy
from worker.policy_file import load_policy
from worker.presets import load_presets


def read_policy(path: Path | None) -> Policy:
    """The policy file at `path`, or the built-in presets when none is given: every
    command's `--policies`, and the worker's SIGHUP. Raises `PolicyError`."""
    return load_presets() if path is None else load_policy(path)
