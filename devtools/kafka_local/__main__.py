"""`python -m devtools.kafka_local`: the same commands as `scripts/kafka-local`."""

from __future__ import annotations

import sys

from devtools.kafka_local.cli import main

sys.exit(main())
