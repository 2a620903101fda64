"""Run the worker and a local Kafka broker as processes, and watch what they report.

One set of tools for everyone who drives the worker from outside, the way an operator
does: the demo (`sla-worker demo`), the integration tests and the benchmarks.

- `WorkerProcess`: `sla-worker worker` as a subprocess, with its port, log, `/readyz`,
  `/tickets/{id}` and `/metrics` (`Scrape`), signals and resource use.
- `LocalBroker`: a broker of `scripts/kafka-local` (a source checkout's), started, stopped
  and resumed on its address.
- `read_all`, `wait_for_records`, `end_offsets`, `create_topics`, `delete_topics`: what
  a topic holds.
- `settled`: wait until the workers have read everything their inputs hold and fired
  everything due up to an instant, as they report it, instead of sleeping "long enough".
"""

from worker.harness.broker import BrokerError, LocalBroker
from worker.harness.process import WorkerExited, WorkerProcess, free_port, log_tail
from worker.harness.scrape import Scrape
from worker.harness.settle import settled
from worker.harness.topics import (
    Record,
    create_topics,
    delete_topics,
    end_offsets,
    read_all,
    wait_for_records,
)

__all__ = [
    "BrokerError",
    "LocalBroker",
    "Record",
    "Scrape",
    "WorkerExited",
    "WorkerProcess",
    "create_topics",
    "delete_topics",
    "end_offsets",
    "free_port",
    "log_tail",
    "read_all",
    "settled",
    "wait_for_records",
]
