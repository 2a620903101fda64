"""Run the worker and a local Kafka broker as processes, and watch what they report.

One set of tools for the integration tests and the benchmarks, which drive the worker from
outside, the way an operator does:

- `WorkerProcess`: `sla-worker worker` as a subprocess, with its port, log, `/readyz`,
  `/tickets/{id}` and `/metrics` (`Scrape`), signals and resource use. It lives in the
  installed package (`worker.harness`), since `sla-worker demo` runs the worker that way
  too; it is re-exported here so tests and benchmarks import from one place.
- `LocalBroker`: a broker of this checkout's `scripts/kafka-local`, started, stopped and
  resumed on its address.
- `read_all`, `wait_for_records`, `end_offsets`, `create_topics`, `delete_topics`: what
  a topic holds.
- `settled`: wait until the workers have read everything their inputs hold and fired
  everything due up to an instant, as they report it, instead of sleeping "long enough".
"""

from devtools.harness.broker import BrokerError, LocalBroker
from devtools.harness.settle import settled
from devtools.harness.topics import (
    Record,
    create_topics,
    delete_topics,
    end_offsets,
    read_all,
    wait_for_records,
)
from worker.harness import Scrape, WorkerExited, WorkerProcess, free_port, log_tail

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
