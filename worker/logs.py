"""Structured logs: one JSON object per line on stderr.

Fields besides the message go in `extra=` (ticket_id, partition, offset, ...), so a log
pipeline can filter on them without parsing prose.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def json_handler(level: str = "INFO") -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.setLevel(level)
    return handler
