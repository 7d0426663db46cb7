"""Log lines carry the context of the work in hand: the HTTP request, or the event handled."""

from __future__ import annotations

import json
import logging

from consumers.event_context import bind_event_context as consumer_context
from domain.meta import meta
from ops.logs import http_request_state, line_formatter
from projections.event_context import bind_event_context as projection_context


def formatted(message: str, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("taskledger.test", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    line = line_formatter(json_lines=True).format(record)
    entry: dict[str, object] = json.loads(line)
    return entry


def test_a_request_line_names_the_request_and_the_user_known_so_far() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    state: dict[str, object] = {"request_id": "req-1", "traceparent": traceparent}
    token = http_request_state.set(state)
    try:
        before_auth = formatted("before")
        state["user_id"] = "user-9"  # what an authenticating route does via request.state
        after_auth = formatted("after", route="/v1/tasks")
    finally:
        http_request_state.reset(token)
    assert before_auth["request_id"] == before_auth["correlation_id"] == "req-1"
    assert "user_id" not in before_auth
    assert before_auth["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert after_auth["user_id"] == "user-9"
    assert after_auth["route"] == "/v1/tasks"
    assert after_auth["message"] == "after"
    assert "request_id" not in formatted("outside any request")


def test_a_worker_line_carries_the_correlation_id_and_traceparent_of_its_event() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for bind in (consumer_context, projection_context):
        with bind(meta("user-1", "req-42", traceparent), mail_kind="reset"):
            inside = formatted("mail sent")
        outside = formatted("idle")
        assert inside["correlation_id"] == "req-42"
        assert inside["traceparent"] == traceparent
        assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert inside["mail_kind"] == "reset"
        assert "correlation_id" not in outside
        assert "trace_id" not in outside


def test_plain_text_lines_for_people_still_carry_the_context() -> None:
    with consumer_context(meta(None, "req-7")):
        record = logging.LogRecord("taskledger.test", logging.INFO, __file__, 1, "hi", (), None)
        line = line_formatter(json_lines=False).format(record)
    assert "req-7" in line
    assert "hi" in line
