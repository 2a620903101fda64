"""The one base class of every exception the package raises on purpose.

`except SlaWorkerError` catches everything our code raises deliberately (bad input, an
unusable policy file or state, brokers that cannot be used), and nothing else: what
escapes it is a bug or an error of the standard library or a dependency. Each subclass
keeps the built-in base it had before (most are also `ValueError`s), so callers that
catch those still do. `tests/unit/test_architecture.py` checks that every exception class
in `worker` derives from this one and appears in the tree below.

    SlaWorkerError
    ├── CalendarError (ValueError)          worker.core.calendar
    ├── InvalidEvent (ValueError)           worker.core.events
    ├── PolicyError (ValueError)            worker.core.policy
    ├── Rejected (ValueError)               worker.core.engine
    ├── StateFormatError (ValueError)       worker.core.state_codec
    ├── UntilBeforeLastEvent (ValueError)   worker.replay
    ├── KafkaAccessError                    worker.kafka.access
    ├── TopicMismatch (RuntimeError)        worker.kafka.topics
    ├── CommitsFailing (RuntimeError)       worker.kafka.committer
    ├── BadParameter (ValueError)           worker.kafka.at_risk_web
    ├── StateUnavailable (RuntimeError)     worker.tasks.partition
    ├── BrokerError (RuntimeError)          devtools.harness.broker (a checkout only)
    └── WorkerExited (RuntimeError)         worker.harness.process

In the compiled build (setup.py) mypyc compiles this module with the engine and replay,
so that their exceptions, compiled too, derive from a native class. The interpreted
subclasses are fine: mypyc stops interpreted code from subclassing its native classes,
but not those built on a built-in exception (tests/unit/test_compiled.py checks both).
"""

from __future__ import annotations


class SlaWorkerError(Exception):
    """Raised deliberately by sla-worker; see the module docstring for the subclasses."""
