"""Start the live worker: settings, policy, topics, then faust until SIGTERM."""

from __future__ import annotations

import asyncio
import logging

import faust
from pydantic import ValidationError
from pydantic_settings import CliApp

from worker.core.policy import Policy, PolicyError
from worker.kafka.app import build_app
from worker.kafka.topics import TopicMismatch, ensure_topics
from worker.logs import json_handler
from worker.policy_file import load_policy
from worker.presets import load_presets
from worker.settings import WorkerSettings

log = logging.getLogger("sla_worker")


def run_worker(args: list[str]) -> int:
    """Run until stopped; the exit status (0 after a graceful SIGTERM/SIGINT)."""
    try:
        settings = CliApp.run(WorkerSettings, cli_args=args)
    except ValidationError as exc:
        print(f"sla-worker worker: invalid settings:\n{exc}")
        return 2
    handler = json_handler(settings.log_level)
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    try:
        policy: Policy = (
            load_presets() if settings.policies is None else load_policy(settings.policies)
        )
    except PolicyError as exc:
        log.error("invalid policy", extra={"problems": exc.issues, "file": exc.source})
        return 2
    log.info("starting", extra={"settings": settings.redacted(), "policy": policy.version})

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        created = loop.run_until_complete(ensure_topics(settings))
    except TopicMismatch as exc:
        log.error(str(exc))
        return 2
    if created:
        log.info("created topics", extra={"topics": created})

    app, _ = build_app(settings, policy, log_handlers=[handler])
    worker = faust.Worker(
        app,
        loop=loop,
        loglevel=settings.log_level,
        redirect_stdouts=False,
        override_logging=False,  # keep our JSON handler: mode would add a coloured one
        quiet=True,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
