"""The twin of consumers/event_context.py, which says what ``bind_event_context`` is for.

projections/ may import only the domain, and this touches structlog and OpenTelemetry, so it
cannot live in domain/; tests/unit/test_event_context_twins.py keeps the two the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import structlog

try:
    from opentelemetry import propagate, trace
except ImportError:  # tracing is optional; logs still join
    trace = None  # type: ignore[assignment]


@contextmanager
def bind_event_context(
    meta: Mapping[str, object] | None, span: str = "handle event", **fields: str
) -> Iterator[None]:
    """Bind ``correlation_id``, ``traceparent`` and ``fields`` to every log line inside."""
    correlation_id = meta.get("correlation_id") if meta else None
    traceparent = meta.get("traceparent") if meta else None
    with structlog.contextvars.bound_contextvars(
        correlation_id=correlation_id, traceparent=traceparent, **fields
    ):
        if trace is None or not isinstance(traceparent, str):
            yield
            return
        parent = propagate.extract({"traceparent": traceparent})
        with trace.get_tracer(__name__).start_as_current_span(span, context=parent):
            yield


@contextmanager
def event_spans(work: Iterable[tuple[Mapping[str, object] | None, str]]) -> Iterator[None]:
    """One span per (meta, span name) of a batch handled in one go, each a child of its event's
    request. Not made current: the events of one batch belong to different traces."""
    if trace is None or isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        yield  # no tracer provider configured: ``work`` is never even iterated
        return
    tracer = trace.get_tracer(__name__)
    spans = [
        tracer.start_span(name, context=propagate.extract({"traceparent": traceparent}))
        for meta, name in work
        if meta and isinstance(traceparent := meta.get("traceparent"), str)
    ]
    try:
        yield
    except Exception as error:
        for span in spans:
            span.record_exception(error)
            span.set_status(trace.StatusCode.ERROR)
        raise
    finally:
        for span in spans:
            span.end()
