"""`python -m devtools.container_bases`: the same commands as `scripts/container-bases`."""

from __future__ import annotations

import sys

from devtools.container_bases.cli import main

sys.exit(main())
