"""One request, one trace, across processes: ``taskledger up`` with OpenTelemetry on exports
OTLP/HTTP to a real receiver here, which decodes the protobuf the API, the projector and the
mailer send. The forgot-password request's server span continues the client's trace; the
projector's handling of its event and the mailer's send of its mail are children of it."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ops.engines import free_port
from tests.e2e.test_up import Up, register_and_login

pytestmark = pytest.mark.e2e

CLIENT_TRACE = "5bf92f3577b34da6a3ce929d0e0e4737"
CLIENT_SPAN = "10f067aa0ba902b8"
TRACE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


class OtlpReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace endpoint (``POST /v1/traces``, protobuf), keeping what it decodes."""

    def __init__(self, port: int) -> None:
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def received(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)


class _Handler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/traces" or self.headers["Content-Type"] != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                spans += [
                    ReceivedSpan(
                        service=attributes["service.name"],
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                    )
                    for span in scope_spans.spans
                ]
        with self.server.lock:
            self.server.spans += spans
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test's output is the assertions'


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_its_projection_and_its_mail_are_one_trace(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    data_dir = tmp_path / "data"
    email = f"trace-{uuid.uuid4().hex[:8]}@example.com"
    with Up(data_dir) as up:
        up.env |= {
            "TASKLEDGER_OTEL_ENABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
            # Exported within a fraction of a second, not the default five.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        url = up.start()
        with httpx.Client(base_url=url, timeout=30) as client:
            register_and_login(client, email, "correct horse battery")
            asked = client.post(
                "/v1/auth/forgot-password",
                json={"email": email},
                headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
            )
            assert asked.status_code == 202, asked.text

        deadline = time.monotonic() + TRACE_TIMEOUT
        while True:
            trace = [s for s in receiver.received() if s.trace_id == CLIENT_TRACE]
            services = {s.service for s in trace}
            mailed = any(s.name == "send password_reset mail" for s in trace)
            if {"taskledger-api", "taskledger-projector"} <= services and mailed:
                break
            assert time.monotonic() < deadline, f"incomplete trace: {trace}"
            time.sleep(0.2)
        assert up.process is not None
        up.process.send_signal(signal.SIGTERM)
        assert up.wait() == 0, up.stderr()

    (server,) = [
        s
        for s in trace
        if s.service == "taskledger-api" and s.name == "POST /v1/auth/forgot-password"
    ]
    assert server.parent_id == CLIENT_SPAN
    # The projection that handles the event, the mail relay, in its own span.
    (relayed,) = [s for s in trace if s.service == "taskledger-projector"]
    assert relayed.name == "mail_relay: domain.identity:User.PasswordResetRequested"
    (mailed_span,) = [s for s in trace if s.service == "taskledger-mailer"]
    assert mailed_span.name == "send password_reset mail"
    for span in (relayed, mailed_span):
        assert span.parent_id == server.span_id, span
    assert len({s.span_id for s in trace}) == len(trace)
    # And the mail was sent: the sink wrote it.
    assert list((data_dir / "mail").rglob("*.eml"))
