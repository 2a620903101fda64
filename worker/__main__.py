"""`python -m worker` is `sla-worker`."""

from worker.cli import main

main()
