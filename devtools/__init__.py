"""The contributor's tools: a local Kafka broker, stand-in container images, and the
harness that drives the worker and a broker from outside (tests and benchmarks).

Not part of the installed program (pyproject.toml packages `worker` only): everything here
works in a source checkout. `kafka_local` and `container_bases` use the standard library
only, so `scripts/kafka-local` and `scripts/container-bases` run with any Python 3.11 and
no virtualenv.
"""
