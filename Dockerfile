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
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
 && rm -rf /wheels \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/sla-worker sla \
 && mkdir -p /var/lib/sla-worker \
 && chown sla:sla /var/lib/sla-worker

# Working directory of the worker (its state lives in Kafka: nothing is kept on disk).
WORKDIR /var/lib/sla-worker
USER sla

# The worker's HTTP port: /tickets, /metrics, /healthz, /readyz.
EXPOSE 6066

ENTRYPOINT ["sla-worker"]
CMD ["worker"]
