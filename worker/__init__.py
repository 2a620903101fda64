"""sla-worker: SLA timers for help desks, driven by a ticket event stream.

The pure domain lives in `worker.core` (calendar math, policies, the ticket timer
state machine); everything that touches Kafka, files, clocks or Prometheus is an
adapter around it.
"""

__version__ = "0.1.0"
