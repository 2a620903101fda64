"""Reading policy files from disk (the core only validates what it is handed)."""

from __future__ import annotations

from pathlib import Path

import yaml

from worker.core.policy import Policy, PolicyError


def load_policy(path: str | Path) -> Policy:
    """Read and build a YAML policy file, or raise `PolicyError` naming the file."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(source, [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from None
    return Policy.from_mapping(data, source)
