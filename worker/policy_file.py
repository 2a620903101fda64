"""Reading policy files from disk (the core only validates what it is handed).

A problem the core finds is named by its path inside the document
(`goals.3.when.group: ...`); this adapter adds the line of the YAML file it is on, by
walking the same path through the file's node tree (composed only when there is a
problem); `policies validate` shows it: `policies.yaml: goals.3.when.group: ... (line 42)`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from worker.core.metrics import BUILTIN_METRICS
from worker.core.policy import Policy, PolicyError

# libyaml's parser where PyYAML was built with it (the wheels are): the same documents,
# several times faster on a policy of a thousand goals.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_policy(path: str | Path) -> Policy:
    """Read and build a YAML policy file, or raise `PolicyError` naming the file (and
    the line of each problem)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.load(text, Loader=_LOADER)  # a safe loader
    except OSError as exc:
        raise PolicyError(source, [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from None
    try:
        return Policy.from_mapping(data, source)
    except PolicyError as exc:
        root = yaml.compose(text, Loader=_LOADER)
        lines = [_line_of(root, issue) for issue in exc.issues]
        raise PolicyError(source, exc.issues, lines) from None


def _line_of(root: yaml.Node | None, issue: str) -> int | None:
    """The 1-based line of the deepest node on the issue's path (`a.b.0.c: message`)."""
    path, found, _ = issue.partition(": ")
    if not found or root is None:
        return None
    node: yaml.Node = root
    for part in path.split("."):
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            child = node.value[int(part)]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def builtin_metrics_yaml() -> str:
    """The built-in metric definitions in a policy file's `metrics:` form (`policies
    show --metrics`): a starting point for metrics of your own."""
    data = {
        name: spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        for name, spec in BUILTIN_METRICS.items()
    }
    header = "# Built-in metrics, written as a policy's `metrics:` would define them.\n"
    return header + yaml.safe_dump({"metrics": data}, sort_keys=False, width=96)
