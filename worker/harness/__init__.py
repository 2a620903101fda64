"""The worker as a subprocess, watched from outside: what `sla-worker demo` runs it with.

- `WorkerProcess`: `sla-worker worker` as a subprocess, with its port, log, `/readyz`,
  `/tickets/{id}` and `/metrics` (`Scrape`), signals and resource use.

Only this ships in the installed package. The rest of the harness (a broker of
`scripts/kafka-local`, topic readers, `settled`) needs a source checkout and lives in
`devtools.harness`, which the integration tests and the benchmarks import.
"""

from worker.harness.process import WorkerExited, WorkerProcess, free_port, log_tail
from worker.harness.scrape import Scrape

__all__ = ["Scrape", "WorkerExited", "WorkerProcess", "free_port", "log_tail"]
