# The sla-worker image: `docker compose up` builds it (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Metadata first, so the dependency layer is rebuilt only when pyproject.toml changes.
# (README.md* : the project readme, copied when present.)
COPY pyproject.toml README.md* ./
COPY worker ./worker
RUN pip install . \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/sla-worker sla \
 && mkdir -p /var/lib/sla-worker \
 && chown sla:sla /var/lib/sla-worker

# Working directory = state directory (faust keeps its table stores under the cwd).
WORKDIR /var/lib/sla-worker
USER sla

# The worker's HTTP port (faust web: health, metrics).
EXPOSE 6066

ENTRYPOINT ["sla-worker"]
CMD ["worker"]
