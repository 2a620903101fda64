"""Stand-in base images for the Dockerfile and docker-compose.yml, made from Debian packages.

    scripts/container-bases ensure [--rebuild] [IMAGE ...]   # build or load what is missing
    scripts/container-bases status                           # what is there, what is cached
    scripts/container-bases engine                           # only check/install podman

Details: devtools/container_bases/__init__.py and docs/development.md#containers.
"""

from __future__ import annotations

import argparse
import sys
import time

from devtools.container_bases.build import ensure_base
from devtools.container_bases.common import BasesError, info
from devtools.container_bases.engine import (
    engine_env,
    ensure_engine,
    image_digest_label,
    missing_packages,
)
from devtools.container_bases.recipes import RECIPES
from devtools.kafka_local.errors import KafkaLocalError


def selected(names: list[str]) -> list[str]:
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        raise BasesError(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    return names or list(RECIPES)


def cmd_ensure(args: argparse.Namespace) -> int:
    ensure_engine()
    started = time.monotonic()
    for name in selected(args.images):
        base = RECIPES[name]()
        what = ensure_base(base, args.rebuild)
        print(f"{base.tag}: {what} ({base.digest()})", flush=True)
    info(f"done in {time.monotonic() - started:.1f} s")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    missing = missing_packages()
    if missing:
        print(f"engine: missing packages {' '.join(missing)}")
        return 1
    complete = True
    for name in selected(args.images):
        base = RECIPES[name]()
        tar = base.cached_tar()
        present = image_digest_label(base.tag) == base.digest()
        complete &= present
        print(
            f"{base.tag}: {'present' if present else 'absent'}; cache "
            f"{tar if tar.is_file() else 'none'}"
        )
    return 0 if complete else 3


def cmd_engine(args: argparse.Namespace) -> int:
    ensure_engine()
    print(f"podman ready (CONTAINERS_CONF={engine_env()['CONTAINERS_CONF']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="container-bases",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure", help="build or load the images that are missing")
    ensure.add_argument("images", nargs="*", help=f"some of {', '.join(RECIPES)} (default all)")
    ensure.add_argument("--rebuild", action="store_true", help="ignore the image and the cache")
    ensure.set_defaults(func=cmd_ensure)
    status = commands.add_parser("status", help="exit 0 when every image is present")
    status.add_argument("images", nargs="*")
    status.set_defaults(func=cmd_status)
    commands.add_parser("engine", help="check (install) podman only").set_defaults(func=cmd_engine)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (BasesError, KafkaLocalError) as exc:
        print(f"container-bases: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
