"""`sla-worker worker`: the live worker's parts, built in order and connected.

JSON logs; the policy; then, on the event loop: the access check (does Kafka accept our
login and certificates?), the topics, `Metrics`, the Kafka clients, the `LiveWorker`
(given the clients), the HTTP server on
both; SIGTERM and SIGINT stop the loop, SIGHUP reloads the policy.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiokafka.errors import KafkaError

from worker.bootstrap import read_policy
from worker.core.policy import Policy, PolicyError
from worker.kafka.access import KafkaAccessError, check_access
from worker.kafka.at_risk_web import due_soon_counts
from worker.kafka.clients import Membership, kafka_clients
from worker.kafka.service import CommitsFailing, LiveWorker
from worker.kafka.snapshot import Snapshots
from worker.kafka.topics import TopicMismatch, ensure_topics, tombstone_retention_ms
from worker.kafka.web import build_web, serve
from worker.logs import json_handler, quiet_coordinator_start
from worker.metrics import Metrics
from worker.settings import WorkerSettings

log = logging.getLogger("sla_worker")


def run(settings: WorkerSettings) -> int:
    """Run until stopped; the exit status (0 after a graceful SIGTERM/SIGINT, 2 for a
    policy or topics that cannot be used, 1 when Kafka cannot be worked with, or when a
    partition's steps keep failing to commit)."""
    configure_logging(settings)
    try:
        policy = read_policy(settings.policies)
    except PolicyError as exc:
        log.error("invalid policy", extra={"problems": exc.issues, "file": exc.source})
        return 2
    log.info("starting", extra={"settings": settings.redacted(), "policy": policy.describe()})
    try:
        return asyncio.run(_serve(settings, policy))
    except TopicMismatch as exc:
        log.error(str(exc))
        return 2
    except KafkaAccessError as exc:
        log.error(str(exc))
        return 1
    except CommitsFailing as exc:
        log.critical(str(exc))
        return 1
    except KafkaError as exc:
        log.error("cannot work with Kafka: %s: %s", type(exc).__name__, exc)
        return 1


def configure_logging(settings: WorkerSettings) -> None:
    """Every log line as JSON on stderr (`worker/logs.py`), at the settings' level."""
    handler = json_handler(settings.log_level)
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    # aiokafka logs every retry of an unreachable broker at ERROR; ours say what matters.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, settings.log_level_number))
    # Except the coordinator lookups that fail at every start until the broker is ready.
    quiet_coordinator_start()


async def _serve(settings: WorkerSettings, policy: Policy) -> int:
    await check_access(settings)  # a wrong password or certificate: say so, and stop
    created = await ensure_topics(settings)
    if created:
        log.info("created topics", extra={"topics": created})
    metrics = Metrics(policy)
    # The clients are made here and handed in (tests hand in fakes instead).
    membership = Membership()
    snapshots, retention = None, None
    if settings.state_dir is not None or settings.standby_replicas > 0:
        # How long the changelog keeps a tombstone: older snapshots and standbys may
        # miss a deletion, and are not used.
        retention = await tombstone_retention_ms(settings)
    if settings.state_dir is not None and retention is not None:
        snapshots = Snapshots(settings.state_dir, settings.app_id, retention)
    clients = kafka_clients(settings, membership)
    worker = LiveWorker(settings, policy, metrics, clients, membership, snapshots, retention)
    metrics.follow_readiness(lambda: worker.ready)
    metrics.follow_due_soon(lambda windows: due_soon_counts(worker.at_risk_view, windows))
    metrics.follow_partitions(
        worker.liveness, settings.allowed_lateness_seconds + settings.timer_interval_seconds
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    def on_hangup() -> None:
        task = asyncio.create_task(_reload_policy(settings, worker))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    runner = await serve(build_web(worker, metrics), settings.web_host, settings.web_port)
    try:
        await worker.run(stop)
    finally:
        await runner.cleanup()
    log.info("stopped")
    return 0


async def _reload_policy(settings: WorkerSettings, worker: LiveWorker) -> None:
    """SIGHUP: read the policy file again; a file that cannot be used is refused, with
    every problem logged, and the policy in use stays."""
    try:
        policy = await asyncio.to_thread(read_policy, settings.policies)
    except PolicyError as exc:
        log.error(
            "policy reload refused: the file cannot be used; still judging with policy %s",
            worker.policy.describe(),
            extra={"problems": exc.issues, "file": exc.source},
        )
        return
    tickets = await worker.reload_policy(policy)
    log.info(
        "policy reloaded",
        extra={"policy": policy.describe(), "file": str(settings.policies), "tickets": tickets},
    )
