"""Process-wide logging through structlog: JSON lines in production, plain text for people.

Every record, whether from structlog or from a stdlib logger (uvicorn, eventsourcing, ours),
goes through the same processors, so each line carries the context bound for the work in hand:
the HTTP request (``request_id``, ``user_id``, ``correlation_id``, ``traceparent``) or the event
being handled (``correlation_id``, ``traceparent``, bound with structlog's contextvars by the
workers); a line with a traceparent also has its ``trace_id``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# The ASGI scope's state of the request being served. A mapping, not copied values: the user id
# is only known once a route has authenticated, and it lands in this same mapping.
http_request_state: ContextVar[MutableMapping[str, Any] | None] = ContextVar(
    "http_request_state", default=None
)


def add_request_context(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    state = http_request_state.get()
    if state is not None:
        request_id = state.get("request_id")
        if request_id is not None:
            event.setdefault("request_id", request_id)
            # An HTTP request's id is the correlation id its events carry (domain.meta).
            event.setdefault("correlation_id", request_id)
        user_id = state.get("user_id")
        if user_id is not None:
            event.setdefault("user_id", str(user_id))
        traceparent = state.get("traceparent")
        if traceparent is not None:
            event.setdefault("traceparent", traceparent)
    return event


def add_trace_id(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """``trace_id``, the traceparent's 32 hex digits: what Grafana links a log line to its
    trace by (ops/deploy/grafana), and what Loki's ``| json`` filters a trace's lines on."""
    traceparent = event.get("traceparent")
    if isinstance(traceparent, str) and len(traceparent) >= 35:
        event.setdefault("trace_id", traceparent[3:35])
    return event


def _drop_color_message(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    # uvicorn passes a terminal-coloured copy of its message as an extra; JSON needs neither.
    event.pop("color_message", None)
    return event


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        add_trace_id,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


def configure_logging(level: Level, *, json_lines: bool) -> None:
    """Configure once per process, first thing; replaces whatever handlers exist.

    uvicorn's loggers propagate to the root handler (run it with ``log_config=None``).
    """
    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(line_formatter(json_lines=json_lines))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def line_formatter(*, json_lines: bool) -> logging.Formatter:
    """Formats any stdlib record (ours, uvicorn's, libraries') with the bound context."""
    shared = _shared_processors()
    renderer: list[Processor] = (
        [
            # Never the frames' local variables: they hold passwords, tokens and mail bodies.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(default=str),
        ]
        if json_lines
        else [
            structlog.dev.ConsoleRenderer(
                colors=False,
                exception_formatter=structlog.dev.plain_traceback,
            )
        ]
    )
    return structlog.stdlib.ProcessorFormatter(
        # Records from stdlib loggers get the same context; ``extra=`` fields are kept.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
