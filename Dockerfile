# syntax=docker/dockerfile:1
# The one image for every role: `ingester serve` (default), `ingester consume`,
# `ingester migrate` and the operator verbs (docs/deploying.md).
#   docker build -t ghcr.io/example/webhook-ingester:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: resolve and install the package into a virtualenv ---------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingester ./ingester
COPY core ./core
COPY contract ./contract
COPY ingest ./ingest
COPY consumers ./consumers
COPY rcsync ./rcsync
# `pip install .`, not `.[dev]`: pytest, the embedded servers and the linters stay out.
# pip byte-compiles the sources here, since the runtime root filesystem is read-only.
RUN pip install . && pip check

# --- runtime: the virtualenv and the migrations, nothing else ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="webhook-ingester" \
      org.opencontainers.image.source="https://github.com/example/webhook-ingester"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MIGRATIONS_DIR=/app/sql
# A fixed numeric uid, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 ingester \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin ingester
# Same path as in the build stage: the venv's scripts point at /opt/venv/bin/python.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# `ingester migrate` reads MIGRATIONS_DIR. Owned by root: the service cannot change them.
COPY sql/ /app/sql/
USER 10001:10001
EXPOSE 8000 9100
ENTRYPOINT ["ingester"]
CMD ["serve"]
