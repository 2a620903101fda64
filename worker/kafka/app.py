"""The faust application: topics, the state table, the agent, the timer, the HTTP API.

Thin by design. Business rules live in `worker.core`; the decision for each message is
`TicketProcessor`'s; this module only moves bytes between Kafka, the table and the
processor, in an order that loses nothing:

1. decode and decide (`TicketProcessor`), with the ticket's stored state;
2. publish warnings/breaches and dead letters, and wait until Kafka has them;
3. only then write the new state (table -> RocksDB + changelog);
4. faust commits the source offset later, after flushing the producer.

A crash anywhere before 3 replays the message: the same warnings and breaches go out
again with the same ids (consumers deduplicate on `event_id`). A crash after 3 cannot
lose them, because they were delivered before the state that records them.

Timers (see `worker.kafka.clocks`): faust timers cannot write tables, so the timer only
sends a small "advance ticket X to instant H" command to an internal topic, on the
ticket's own partition; the agent consumes it like any event and does the writing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from faust.types import TP, EventT, StreamT
from faust.web import Request, Response, View

from worker.core.engine import Engine
from worker.core.policy import Policy
from worker.kafka.clocks import TimerClocks
from worker.kafka.processor import (
    DeadLetter,
    Outcome,
    Source,
    TicketProcessor,
    decode_command,
    encode_command,
    encode_event,
)
from worker.kafka.recovery_watch import RecoveryWatch
from worker.metrics import Metrics
from worker.settings import WorkerSettings

log = logging.getLogger("sla_worker")

RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def commands_topic_name(settings: WorkerSettings) -> str:
    return f"{settings.app_id}-timer-commands"


@dataclass
class Runtime:
    """What the agent, the timer and the web views share (no globals)."""

    settings: WorkerSettings
    processor: TicketProcessor
    clocks: TimerClocks
    metrics: Metrics
    last_offset: dict[TP, int] = field(default_factory=dict)
    recovered: bool = False
    recovery_watch: asyncio.Future[None] | None = None


def build_app(
    settings: WorkerSettings, policy: Policy, log_handlers: list[logging.Handler] | None = None
) -> tuple[faust.App, Runtime]:
    several_inputs = len(settings.input_topics) > 1
    runtime = Runtime(
        settings=settings,
        processor=TicketProcessor(
            Engine(policy),
            timedelta(seconds=settings.hold_unknown_seconds) if several_inputs else None,
        ),
        clocks=TimerClocks(timedelta(seconds=settings.allowed_lateness_seconds)),
        metrics=Metrics(policy),
    )
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.session_timeout_seconds / 10,
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.canonical_url,
        web_in_thread=False,
        stream_buffer_maxsize=4096,
        table_standby_replicas=0,
        loghandlers=log_handlers or [],
    )
    commands_name = commands_topic_name(settings)
    # One agent reads inputs and timer commands alike: every state change of a ticket
    # happens in one place, one message at a time (stateful agents stay at concurrency 1).
    source = app.topic(*settings.input_topics, commands_name, **RAW)
    commands = app.topic(commands_name, partitions=settings.partitions, **RAW)
    warnings = app.topic(settings.warnings_topic, **RAW)
    breaches = app.topic(settings.breaches_topic, **RAW)
    dead_letters = app.topic(settings.dead_letter_topic, **RAW)
    # Keys are the raw ticket id bytes, exactly the input messages' keys: faust's router
    # hashes the serialized key to find a ticket's owner, and a `str` key type would
    # JSON-quote it and route requests to the wrong worker.
    table = app.Table(
        "tickets",
        partitions=settings.partitions,
        key_type=bytes,
        help="SLA state per ticket id",
    )

    async def deliver(outcome: Outcome, key: bytes | None) -> None:
        """Step 2: publish and wait for Kafka's acknowledgement."""
        pending = []
        for event in outcome.publish:
            topic = breaches if event.type == "sla-breach" else warnings
            pending.append(
                await topic.send(key=event.ticket_id.encode(), value=encode_event(event))
            )
        for letter in outcome.dead_letters:
            pending.append(
                await dead_letters.send(
                    key=letter.source.key, value=letter.source.value, headers=letter.headers()
                )
            )
        for future in pending:
            await future
        for event in outcome.publish:
            log.info(
                "published %s",
                event.type,
                extra={
                    "ticket_id": event.ticket_id,
                    "metric": event.metric,
                    "cycle": event.cycle,
                    "due_at": event.due_at.isoformat(),
                    "event_id": event.event_id,
                },
            )
        for letter in outcome.dead_letters:
            log.warning(
                "dead-lettered: %s",
                letter.detail,
                extra={
                    "reason": letter.reason,
                    "ticket_key": None if letter.source.key is None else repr(letter.source.key),
                    "topic": letter.source.topic,
                    "partition": letter.source.partition,
                    "offset": letter.source.offset,
                },
            )

    def store(
        partition: int, ticket_id: str, outcome: Outcome, previous: dict[str, Any] | None
    ) -> None:
        """Step 3: write state (`{}` deletes it; `previous`: the value read in step 1),
        then reschedule the ticket's timer and any held events on its partition."""
        if outcome.state is not None:
            if outcome.state:
                table[ticket_id.encode()] = outcome.state
            elif ticket_id.encode() in table:
                del table[ticket_id.encode()]
            runtime.metrics.state(ticket_id, outcome.state, previous)
        runtime.clocks.schedule(partition, ticket_id, outcome.due)
        if outcome.hold_until is not None:
            runtime.clocks.hold(partition, ticket_id, outcome.hold_until)

    async def on_input(event: EventT[Any]) -> None:
        started = time.perf_counter()
        message = event.message
        source_info = Source(
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value if isinstance(message.value, bytes) else b"",
            _headers(message.headers),
        )
        ticket_id = _ticket_key(message.key, source_info)
        now = datetime.now(UTC)
        stored = table.get(ticket_id.encode()) if ticket_id is not None else None
        outcome = runtime.processor.on_event(source_info, stored, now)
        await deliver(outcome, message.key)
        if ticket_id is not None:
            store(message.partition, ticket_id, outcome, stored)
        clock = runtime.clocks.clock(message.partition)
        if clock is not None and outcome.occurred_at is not None and not outcome.held:
            clock.observe(outcome.occurred_at)
        runtime.last_offset[message.tp] = message.offset
        runtime.metrics.outcome(outcome, started)

    async def on_command(event: EventT[Any]) -> None:
        started = time.perf_counter()
        message = event.message
        kind, ticket_id, until = decode_command(bytes(message.value or b""))
        stored = table.get(ticket_id.encode())
        if kind == "expire":
            outcome = runtime.processor.expire_held(stored, message.partition, until)
        else:
            outcome = runtime.processor.on_due(stored, message.partition, until)
        await deliver(outcome, message.key)
        store(message.partition, ticket_id, outcome, stored)
        runtime.metrics.outcome(outcome, started, command=True)

    async def on_failure(event: EventT[Any], exc: Exception) -> None:
        """A bug or unreadable state must not stop the stream: dead-letter the message."""
        log.exception("unexpected error processing %s", _where(event), exc_info=exc)
        message = event.message
        value = message.value if isinstance(message.value, bytes) else b""
        letter = DeadLetter(
            Source(message.topic, message.partition, message.offset, message.key, value),
            "internal-error",
            f"{type(exc).__name__}: {exc}",
        )
        await deliver(Outcome(dead_letters=[letter]), message.key)
        runtime.metrics.failed(letter, command=message.topic == commands_name)

    @app.agent(source, name="sla-tickets", concurrency=1)
    async def process(stream: StreamT[Any]) -> None:
        async for event in stream.events():
            try:
                if event.message.topic == commands_name:
                    await on_command(event)
                else:
                    await on_input(event)
            except Exception as exc:
                await on_failure(event, exc)

    @table.on_recover
    async def rebuild() -> None:
        """After (re)assignment and table recovery: rebuild the due-indexes."""
        started = datetime.now(UTC)
        assigned = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic in settings.input_topics
        }
        runtime.clocks.clear()
        runtime.metrics.timers.clear()
        for partition in assigned:
            runtime.clocks.assign(partition)
        count = 0
        for key, stored in table.items():
            ticket_id = key.decode() if isinstance(key, bytes) else str(key)
            partition, ticket, hold_until = runtime.processor.restore(stored)
            if ticket is not None:
                runtime.clocks.schedule(partition, ticket_id, ticket.due)
                # The partition's event time is the latest occurred_at applied there: known
                # from its state, so timers of a taken-over, idle partition can fire.
                clock = runtime.clocks.clock(partition)
                if clock is not None:
                    clock.observe(ticket.last_event_at)
            if hold_until is not None:
                runtime.clocks.hold(partition, ticket_id, hold_until)
            runtime.metrics.state(ticket_id, stored)
            count += 1
            if count % 5000 == 0:
                await asyncio.sleep(0)  # a long scan must not stall the agents
        runtime.recovered = True
        seconds = (datetime.now(UTC) - started).total_seconds()
        runtime.metrics.recovered(count, seconds)
        log.info(
            "recovered %d tickets on partitions %s in %.2f s", count, sorted(assigned), seconds
        )

    async def watch_recovery() -> None:
        """Unstick a recovery that a faust fetch race left waiting (see recovery_watch)."""
        watch: RecoveryWatch[TP] = RecoveryWatch(settings.recovery_stall_seconds)
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        while not app.should_stop:
            await asyncio.sleep(1.0)
            if not recovery.in_recovery:
                watch.idle()
                continue
            seeks = watch.observe(
                time.monotonic(), recovery.active_offsets, recovery.active_remaining()
            )
            if seeks:
                log.warning(
                    "state recovery applied nothing for %.0f s; reading changelog "
                    "partitions again from %s",
                    settings.recovery_stall_seconds,
                    {f"{tp.topic}[{tp.partition}]": offset for tp, offset in seeks.items()},
                )
                runtime.metrics.recovery_restarts.inc()
                try:
                    await app.consumer.seek_wait(seeks)
                except Exception as exc:  # e.g. a rebalance took the partitions meanwhile
                    # Never let the watch crash the app; the next stall period retries.
                    log.warning("could not seek the stalled changelog partitions: %r", exc)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(app_: faust.App, revoked: set[TP], **_: Any) -> None:
        runtime.recovered = False
        if runtime.recovery_watch is None:
            # Started here, at the first rebalance, not as an @app.task: faust starts those
            # only after the first recovery, which the watch must cover too.
            runtime.recovery_watch = app.add_future(watch_recovery())
        for tp in revoked:
            runtime.clocks.revoke(tp.partition)
            runtime.last_offset.pop(tp, None)

    @app.timer(interval=settings.timer_interval_seconds)  # type: ignore[untyped-decorator]
    async def fire_due() -> None:
        if app.rebalancing or not runtime.recovered:
            return
        for partition in runtime.clocks.partitions():
            clock = runtime.clocks.clock(partition)
            if clock is not None:
                clock.caught_up = await _caught_up(app, runtime, settings, partition)
        now = datetime.now(UTC)
        for partition, ticket_id, until, kind in runtime.clocks.ready(now):
            await commands.send(
                key=ticket_id.encode(),
                partition=partition,
                value=encode_command(kind, ticket_id, until),
            )

    class TicketView(View):
        @app.table_route(table=table, match_info="ticket_id")  # type: ignore[arg-type]
        async def get(self, request: Request, ticket_id: str) -> Response:
            stored = table.get(ticket_id.encode())
            if stored is None:
                return self.json({"error": f"unknown ticket {ticket_id!r}"}, status=404)
            body = runtime.processor.describe(ticket_id, stored, datetime.now(UTC))
            return self.json(body)

    app.page("/tickets/{ticket_id}")(TicketView)
    runtime.metrics.install(app, runtime)
    return app, runtime


def _credentials(settings: WorkerSettings) -> Any:
    context = settings.ssl_context()
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """Message headers as (name, bytes) pairs, whatever shape the client gave them."""
    items = headers.items() if hasattr(headers, "items") else (headers or [])
    return tuple((str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items)


def _ticket_key(key: bytes | None, source: Source) -> str | None:
    """The table key: the message key (the producer's ticket id)."""
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


async def _caught_up(
    app: faust.App, runtime: Runtime, settings: WorkerSettings, partition: int
) -> bool:
    """Has this worker applied everything its input partitions held at last fetch?"""
    consumer = app.consumer
    caught_up = True
    for topic in settings.input_topics:
        tp = TP(topic, partition)
        highwater = consumer.highwater(tp)
        if highwater is None:
            return False
        last = runtime.last_offset.get(tp)
        # Nothing processed since assignment: faust recorded the committed offset when it
        # seeked there (private attribute of faust-streaming 0.15; pinned in pyproject).
        next_offset = (
            last + 1 if last is not None else consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        )
        if next_offset is None:
            # No commit recorded (a partition taken over with nothing new to read, or a
            # group that never committed): where the consumer will read next. Asked on every
            # tick, never cached: until faust has seeked the new assignment to its committed
            # offsets, the answer is not final.
            next_offset = await consumer.position(tp) or 0
        runtime.metrics.consumer_lag_of(topic, partition, max(highwater - next_offset, 0))
        if next_offset < highwater:
            caught_up = False
    return caught_up


def _where(event: EventT[Any]) -> str:
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"
