"""Per-request observability: latency by route template, a traceparent, the log context.

One ASGI middleware, so each request pays for a single wrapper. It runs inside
``RequestIdMiddleware`` (which puts ``request_id`` in the scope's state) and outside the router,
so once the app returns the scope names the route that matched.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import TYPE_CHECKING, TypeGuard

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ops.logs import http_request_state
from ops.metrics import HTTP_REQUEST_DURATION, UNMATCHED_ROUTE
from ops.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("taskledger.http")

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
# Probes and scrapes arrive every few seconds; their lines would drown the requests people make.
_QUIET_ROUTES = frozenset({"/health/live", "/health/ready", "/metrics"})
# Any other method token a client invents is counted as OTHER, so it cannot mint series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def new_traceparent() -> str:
    """A fresh W3C traceparent (not sampled), for requests that arrive without one."""
    # Ids only need to be unique, not secret: the fast PRNG spares two urandom calls a request.
    trace_id = random.getrandbits(128) or 1
    span_id = random.getrandbits(64) or 1
    return f"00-{trace_id:032x}-{span_id:016x}-00"


def valid_traceparent(value: str | None) -> TypeGuard[str]:
    match = _TRACEPARENT.fullmatch(value or "")
    return match is not None and set(match[1]) != {"0"} and set(match[2]) != {"0"}


class ObservabilityMiddleware:
    """Times every request by route template, gives it a traceparent, binds its log context.

    The traceparent (the client's, or a new one, or the server span's when tracing is on)
    replaces the request's header, so the events the request appends carry it in their meta
    and the projector's and mailer's work joins this request.
    """

    def __init__(self, app: ASGIApp, *, tracing: bool = False) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Not reset afterwards on purpose: each request runs in its own task (so its own
        # context), and the server's last-resort error handler, outside us, logs with it.
        http_request_state.set(scope.setdefault("state", {}))
        incoming = _header(scope, b"traceparent")
        status = 500  # what the client gets if the app raises before answering

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.tracing:
                await self._traced(scope, receive, send_observed, incoming)
            else:
                traceparent = incoming if valid_traceparent(incoming) else new_traceparent()
                _set_header(scope, b"traceparent", traceparent)
                scope["state"]["traceparent"] = traceparent  # the log lines' trace_id
                await self.app(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUEST_DURATION.labels(method, route, str(status)).observe(elapsed)
            level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "request",
                    extra={
                        "http_method": scope["method"],
                        "route": route,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )

    async def _traced(
        self, scope: Scope, receive: Receive, send: Send, incoming: str | None
    ) -> None:
        from opentelemetry import propagate

        # FastAPI's native telemetry has already opened the server span (a child of the
        # client's traceparent, named by route template): the events continue that span.
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        current = carrier.get("traceparent")
        if valid_traceparent(current):
            traceparent = current
        else:
            traceparent = incoming if valid_traceparent(incoming) else new_traceparent()
        _set_header(scope, b"traceparent", traceparent)
        scope["state"]["traceparent"] = traceparent
        await self.app(scope, receive, send)


def _route_template(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _set_header(scope: Scope, name: bytes, value: str) -> None:
    headers = [(k, v) for k, v in scope.get("headers", []) if k != name]
    headers.append((name, value.encode("latin-1")))
    scope["headers"] = headers


_tracing_configured = False


def configure_tracing(
    settings: Settings, service: str, exporter: SpanExporter | None = None
) -> bool:
    """Install an OpenTelemetry tracer provider when enabled and the SDK is installed.

    Once per process (OpenTelemetry's provider is global). Spans go to ``exporter`` when given
    (tests), else to OTLP over HTTP when that exporter is installed; the OTEL_* variables
    configure it. Returns whether spans are being recorded.
    """
    global _tracing_configured
    if not settings.otel_enabled:
        return False
    if _tracing_configured:
        return True
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        log.warning("TASKLEDGER_OTEL_ENABLED is set but opentelemetry-sdk is not installed")
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": f"taskledger-{service}"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("no OTLP exporter installed: spans propagate but are not exported")
        else:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracing_configured = True
    return True
