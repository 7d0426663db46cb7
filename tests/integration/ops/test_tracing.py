"""OpenTelemetry, when enabled: the request's span continues the client's trace, the events it
appends carry that span as their traceparent, and a worker's span for the event is its child."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from consumers.event_context import bind_event_context
from domain.meta import meta
from ops.observability import configure_tracing
from tests.fixtures.api import Server, make_settings

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    enabled = make_settings(
        Path("unused"), None, "redis://unused", "unused:", otel_enabled=True, migrated=False
    )
    # The tracer provider is global: the first configuration in this process wins.
    assert configure_tracing(enabled, "test", exporter=exporter)
    return exporter


def test_a_request_span_is_continued_by_the_worker_handling_its_event(
    spans: InMemorySpanExporter, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    spans.clear()
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'e.sqlite'}", redis_url, redis_prefix, otel_enabled=True
    )
    credentials = {"email": f"t{uuid.uuid4().hex[:8]}@example.com", "password": "pw-123456789"}
    with Server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as api:
        api.post("/v1/auth/register", json=credentials)
        token = api.post("/v1/auth/login", json=credentials).json()["access_token"]
        created = api.post(
            "/v1/tasks",
            json={"title": "traced"},
            headers={
                "Authorization": f"Bearer {token}",
                "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
            },
        )
        assert created.status_code == 201
        app: Any = server.server.config.app
        (event,) = list(app.state.tasks.events.get(uuid.UUID(created.json()["id"])))

    # FastAPI's native telemetry opens the server span; the events must continue it.
    (server_span,) = [
        s
        for s in spans.get_finished_spans()
        if s.name == "POST /v1/tasks" and s.kind == SpanKind.SERVER
    ]
    assert format(server_span.context.trace_id, "032x") == CLIENT_TRACE
    assert server_span.parent is not None
    assert format(server_span.parent.span_id, "016x") == CLIENT_SPAN
    assert server_span.attributes is not None
    assert server_span.attributes["http.route"] == "/v1/tasks"
    server_span_id = format(server_span.context.span_id, "016x")
    assert event.meta["traceparent"] == f"00-{CLIENT_TRACE}-{server_span_id}-01"

    with bind_event_context(event.meta, "send mail"):
        pass
    (worker_span,) = [s for s in spans.get_finished_spans() if s.name == "send mail"]
    assert format(worker_span.context.trace_id, "032x") == CLIENT_TRACE
    assert worker_span.parent is not None
    assert format(worker_span.parent.span_id, "016x") == server_span_id


def test_each_event_of_a_batch_gets_its_own_span_in_its_own_trace(
    spans: InMemorySpanExporter,
) -> None:
    from opentelemetry import trace

    from projections.event_context import event_spans

    spans.clear()
    first, second = "1" * 32, "2" * 32
    work = [
        (meta(None, "req-1", f"00-{first}-{'a' * 16}-01"), "users: one"),
        (meta(None, "req-2", f"00-{second}-{'b' * 16}-01"), "users: two"),
        (meta(None, "req-3"), "users: no traceparent"),
    ]
    with event_spans(work):
        # Not made current: what runs inside belongs to no single event's trace.
        assert not trace.get_current_span().get_span_context().is_valid
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert set(finished) == {"users: one", "users: two"}
    for name, trace_id, parent in [("users: one", first, "a"), ("users: two", second, "b")]:
        span = finished[name]
        assert format(span.context.trace_id, "032x") == trace_id
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == parent * 16
