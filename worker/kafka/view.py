"""What the HTTP API and the metrics read of the running worker: read only.

Nothing here changes a task or talks to Kafka; it reads the task manager's tasks and
what was last seen of the inputs. Between two steps it shows committed state; while a
step is under way (`busy`), what it shows may not be committed yet.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.kafka.inputs import InputWatch
from worker.kafka.standby import Standbys
from worker.kafka.task_manager import TaskManager
from worker.tasks.clocks import TimerIndex
from worker.tasks.partition import Partition, StateUnavailable
from worker.tasks.processor import iso


class WorkerView:
    def __init__(
        self, tasks: TaskManager, inputs: InputWatch, standbys: Standbys | None = None
    ) -> None:
        self.tasks = tasks
        self.inputs = inputs
        self.standbys = standbys

    def standby_diagnostics(self) -> list[dict[str, int | None]]:
        """Per warm standby: its changelog position, the end last seen and the lag."""
        return [] if self.standbys is None else self.standbys.diagnostics()

    @property
    def busy(self) -> bool:
        return self.tasks.lock.locked()

    def owns(self, partition: int) -> bool:
        return partition in self.tasks.running()

    def describe(self, partition: int, ticket_id: str) -> dict[str, Any] | None:
        owned = self.tasks.running().get(partition)
        return None if owned is None else owned.describe(ticket_id, datetime.now(UTC))

    def at_risk_view(self) -> tuple[dict[int, Partition], set[int]]:
        """For `GET /at-risk` (#24): the running partitions, read between steps (the
        query runs on the event loop, never during one), and the assigned partitions
        that cannot answer yet (restoring, or suspended while the brokers are away)."""
        running = self.tasks.running()
        waiting = {n for n in self.tasks.tasks if n not in running}
        return running, waiting

    def liveness(self) -> list[tuple[int, bool, datetime | None]]:
        """(partition, caught up, earliest unfired due instant) per running partition."""
        return [
            (number, partition.clock.caught_up, _peek(partition.clock.due))
            for number, partition in self.tasks.running().items()
        ]

    def diagnostics(self) -> list[dict[str, Any]]:
        """Per running input partition: the next offset to read and the partition's end
        (last stable offset) as last seen, the offset the partition's last step recorded
        (its state holds it; committed unless `busy`); and, for the partition (so the
        same on each of its inputs' rows), the earliest due instant of a timer that has
        not fired yet and the earliest wall-clock expiry of events held for a ticket not
        created yet."""
        rows = []
        for number, partition in self.tasks.running().items():
            due, held = _peek(partition.clock.due), _peek(partition.clock.holds)
            for tp in self.inputs.of(number):
                seen = self.inputs.view(tp)
                rows.append(
                    {
                        "topic": tp.topic,
                        "partition": number,
                        "position": seen.position,
                        "end": seen.end,
                        "committed": partition.offsets.get(tp.topic),
                        "caught_up": partition.clock.caught_up,
                        "next_due": None if due is None else iso(due),
                        "held_until": None if held is None else iso(held),
                    }
                )
        return rows


def _peek(index: TimerIndex) -> datetime | None:
    """The index's earliest instant; None when its local store fails a read (the
    partition's next step fails the same way, and restores it)."""
    try:
        return index.peek()
    except StateUnavailable:
        return None
