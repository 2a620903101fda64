"""Stand-in base images for the Dockerfile and docker-compose.yml, made from Debian packages.

    scripts/container-bases ensure [--rebuild] [IMAGE ...]   # build or load what is missing
    scripts/container-bases status                           # what is there, what is cached
    scripts/container-bases engine                           # only check/install podman

Where no container registry can be reached, the images the project's files name
(`python:3.11-slim`, `apache/kafka:<version>`, `prom/prometheus:<version>`) are built here
with mmdebstrap from Debian bookworm, plus the Kafka jars `scripts/kafka-local` pins
and fetches, and tagged with exactly those names in podman's image store; the
Dockerfile and docker-compose.yml stay what a user with a registry runs.

Each image's root file system is cached as a tar under
${XDG_CACHE_HOME:-~/.cache}/sla-worker/container-bases/, named by a digest of everything
that goes into it (package lists, image settings, files copied in, the host's extra CA
certificates); the image carries the digest as a label. A warm run finds the image with
that label and does nothing; with only the tar, it imports the tar (seconds); otherwise it
builds (about 20 s per image on the 2-core development machine). Change BASES_VERSION when
changing how images are built.

The engine is podman (docs/development.md says why), run with the project's
scripts/containers/containers.conf (CONTAINERS_CONF). Missing packages (podman, runc,
netavark, aardvark-dns, iptables, mmdebstrap) are installed with apt-get when this runs as
root; otherwise the script names them and exits 1. Building needs root (mmdebstrap
--mode=root, rootful podman).

Modules: `common` (errors, cache, locks), `engine` (podman and its packages), `recipes`
(what goes into each image, and its digest), `build` (mmdebstrap and podman import),
`cli` (the commands). Standard library only, like `devtools.kafka_local`.
"""
