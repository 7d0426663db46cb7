# syntax=docker/dockerfile:1.7
# One image for every process: the entrypoint is the `taskledger` CLI and the command picks the
# process (`serve api --routes auth|tasks|all`, `serve projector`, `serve mailer`, operator tools).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only here, for any dependency without a wheel; the runtime stage never has them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/taskledger
ENV PATH=/opt/taskledger/bin:$PATH
WORKDIR /src
# Dependencies first, pinned by constraints.txt: this layer is reused while only code changes.
COPY pyproject.toml constraints.txt README.md ./
# The otel extra too: every process exports its spans when TASKLEDGER_OTEL_ENABLED is set.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['otel']))" > requirements.txt \
    && pip install -c constraints.txt -r requirements.txt
COPY domain ./domain
COPY commands ./commands
COPY queries ./queries
COPY projections ./projections
COPY consumers ./consumers
COPY ops ./ops
RUN pip install --no-deps -c constraints.txt . \
    && taskledger --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="taskledger" \
      org.opencontainers.image.description="Event-sourced CQRS task manager backend: API, projector, mailer" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 taskledger \
    && useradd --system --uid 10001 --gid taskledger --no-log-init \
       --home-dir /var/lib/taskledger --create-home --shell /usr/sbin/nologin taskledger
COPY --from=build /opt/taskledger /opt/taskledger
ENV PATH=/opt/taskledger/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TASKLEDGER_DATA_DIR=/var/lib/taskledger \
    TASKLEDGER_LOG_JSON=true
USER 10001:10001
WORKDIR /var/lib/taskledger
# 8000: the API; 9100: /metrics of the projector and mailer (--metrics-port).
EXPOSE 8000 9100
# Every process answers HTTP on one port: the API its /health/live, the workers their metrics
# server (any path). Compose and k8s set their own probes per process; this is the default.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:8000/health/live'), timeout=2)"]
ENTRYPOINT ["taskledger"]
CMD ["serve", "api", "--host", "0.0.0.0", "--port", "8000"]
