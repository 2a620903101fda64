"""The task layer: one input partition's work, pure, as Kafka Streams' StreamTask is one
task's, but without I/O (no Kafka client, no wall clock, no files).

- `partition`: a partition's tickets, clock and due index, and `Partition.step`, which
  turns the messages of one step into the `Batch` to commit in one transaction;
- `processor`: one message in, one decision out (`TicketProcessor`, `Outcome`);
- `clocks`: when a partition's timers may fire (`PartitionClock`);
- `cloudevents`: the CloudEvents headers of the records a step publishes.

`worker.kafka.service` drives tasks against Kafka; `worker.metrics` reads their outcomes.
"""
