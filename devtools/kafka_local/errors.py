"""The one exception the commands turn into `kafka-local: error: ...` and exit 1."""

from __future__ import annotations


class KafkaLocalError(Exception):
    """A failure with a message meant for the user."""
