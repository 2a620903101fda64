# The sla-worker image: `docker compose up` builds it (see docker-compose.yml).

# Build stage: a wheel whose hot path mypyc compiled to C (setup.py), which needs a C
# compiler; the runtime image below gets only the wheel, not the compiler.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# (README.md* : the project readme, copied when present.)
COPY pyproject.toml setup.py README.md* ./
COPY worker ./worker
RUN SLA_WORKER_COMPILED=1 pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies at the versions the project tested (requirements/runtime.lock, hash-checked),
# then the wheel alone.
COPY requirements/runtime.lock /tmp/runtime.lock
COPY --from=build /wheels /wheels
RUN pip install --require-hashes -r /tmp/runtime.lock \
 && pip install --no-deps /wheels/*.whl \
 && rm -rf /wheels /tmp/runtime.lock \
 && groupadd --system --gid 10001 sla \
 && useradd --system --uid 10001 --gid sla --home-dir /var/lib/sla-worker sla \
 && mkdir -p /var/lib/sla-worker \
 && chown sla:sla /var/lib/sla-worker

# Working directory of the worker (its state lives in Kafka: nothing is kept on disk).
WORKDIR /var/lib/sla-worker
USER sla

# The worker's HTTP port: /tickets, /metrics, /healthz, /readyz.
EXPOSE 6066

# Liveness for `docker run`/compose (Kubernetes uses its own probes, deploy/k8s/). The slim
# image has no curl: Python's urllib asks /healthz on the configured port. (podman keeps
# this only in the docker image format: `podman build --format docker`.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SLA_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["sla-worker"]
CMD ["worker"]
