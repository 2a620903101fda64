"""The functional core: pure, deterministic functions of events and event time.

Nothing in this package performs I/O, reads the wall clock, or imports an adapter
(aiokafka, aiohttp, prometheus_client); `tests/unit/test_architecture.py` enforces it.
"""
