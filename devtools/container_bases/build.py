"""Building an image: mmdebstrap a root file system tar (cached), podman import it."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from devtools.container_bases.common import cache_dir, info
from devtools.container_bases.engine import LABEL, image_digest_label, run
from devtools.container_bases.recipes import MIRRORS, SUITE, Base
from devtools.kafka_local.layout import locked


def build_rootfs(base: Base, tar: Path) -> None:
    """mmdebstrap the packages, copy files in, run the commands: a root file system tar."""
    hooks = []
    for source, target in base.copies:
        parent = str(Path(target).parent)
        if source.is_dir():
            hooks.append(
                f'mkdir -p "$1{target}" && cp -a {shlex.quote(f"{source}/.")} "$1{target}/"'
            )
        else:
            hooks.append(f'mkdir -p "$1{parent}" && cp -a {shlex.quote(str(source))} "$1{target}"')
    hooks += [f"chroot \"$1\" sh -c '{command}'" for command in base.commands]
    partial = tar.with_name(tar.name + f".partial-{os.getpid()}")
    command = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=tar",
        "--quiet",
        '--aptopt=APT::Install-Recommends "false"',
        '--aptopt=Acquire::Retries "3"',
        # Like the official slim images: no documentation, manual pages or translations.
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        # (openjdk's postinst links its manual pages and fails without this directory.)
        '--essential-hook=mkdir -p "$1/usr/share/man/man1"',
        f"--include={','.join(base.packages)}",
        *(f"--customize-hook={hook}" for hook in hooks),
        SUITE,
        str(partial),
        *MIRRORS,
    ]
    info(f"building {base.tag} from Debian {SUITE} ({', '.join(base.packages)}) ...")
    started = time.monotonic()
    try:
        run(command, what=f"mmdebstrap for {base.tag}")
        partial.replace(tar)
    finally:
        partial.unlink(missing_ok=True)
    size = tar.stat().st_size / 2**20
    info(f"built {base.tag} in {time.monotonic() - started:.0f} s ({size:.0f} MiB)")


def import_image(base: Base, tar: Path) -> None:
    changes = [*base.changes, f"LABEL {LABEL}={base.digest()}"]
    run(
        [
            "podman",
            "import",
            "--quiet",
            *(f"--change={change}" for change in changes),
            f"--message=sla-worker stand-in from Debian {SUITE} (scripts/container-bases)",
            str(tar),
            base.tag,
        ],
        what=f"podman import of {base.tag}",
    )


def ensure_base(base: Base, rebuild: bool) -> str:
    """The image is in podman's store with this recipe's digest; what was done."""
    digest = base.digest()
    if not rebuild and image_digest_label(base.tag) == digest:
        return "present"
    tar = base.cached_tar()
    with locked(cache_dir() / f".lock-{base.slug}"):
        what = "imported from cache"
        if rebuild or not tar.is_file():
            build_rootfs(base, tar)
            what = "built"
        started = time.monotonic()
        import_image(base, tar)
        info(f"imported {base.tag} in {time.monotonic() - started:.0f} s")
        # Tars of earlier recipes of this image are dead weight.
        for old in cache_dir().glob(f"{base.slug}-*.tar"):
            if old != tar:
                old.unlink(missing_ok=True)
    return what
