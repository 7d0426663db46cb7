"""HTTP metrics and the Prometheus exposition every process serves (API route or own port).

With several worker processes per container, prometheus-client's multiprocess mode needs
``PROMETHEUS_MULTIPROC_DIR`` set (and emptied) before any process starts; the exposition then
merges every process's files through a ``MultiProcessCollector`` instead of the default registry.
"""

from __future__ import annotations

import os
from threading import Thread
from wsgiref.simple_server import WSGIServer

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

HTTP_REQUEST_DURATION = Histogram(
    "taskledger_http_request_duration_seconds",
    "HTTP request latency by method, route template (never the raw path) and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

DEPENDENCY_READY = Gauge(
    "taskledger_dependency_ready",
    "1 when the dependency answered this process's last readiness check, else 0.",
    ["dependency"],
    # Several workers in one container: a dependency is ready only if it is for all of them.
    multiprocess_mode="livemin",
)

# The label of requests no route matched: raw paths would let any client mint series.
UNMATCHED_ROUTE = "unmatched"

router = APIRouter(tags=["operations"])


def exposition_registry() -> CollectorRegistry:
    """The default registry, or in multiprocess mode a collector over every process's files."""
    # prometheus-client itself keys multiprocess mode on this variable, read at its import.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus text exposition of this process (or of every process, in multiprocess mode)."""
    return Response(generate_latest(exposition_registry()), media_type=CONTENT_TYPE_LATEST)


def serve_metrics(port: int, host: str = "0.0.0.0") -> tuple[WSGIServer, Thread]:
    """``/metrics`` on its own port, for the processes that serve no HTTP (projector, mailer).

    Returns the server and its daemon thread; ``server.shutdown()`` stops it.
    """
    return start_http_server(port, addr=host, registry=exposition_registry())
