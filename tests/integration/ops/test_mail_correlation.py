"""The mailer's log line for a reset mail carries the correlation id (and traceparent) of the
HTTP request that asked for it: API -> event meta -> relay -> broker -> mailer, all real."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ops.logs import line_formatter
from ops.settings import Settings
from ops.smtp_sink import SmtpSink
from tests.fixtures.api import Server
from tests.fixtures.mail import mailing, relaying
from tests.fixtures.projections import eventually


class Lines(logging.Handler):
    """Keeps every record as the JSON line production would write."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(line_formatter(json_lines=True))
        self.entries: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


@pytest.fixture
def mailer_lines() -> Iterator[Lines]:
    lines = Lines()
    logger = logging.getLogger("taskledger.mailer")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


async def test_the_reset_mail_line_carries_the_request_correlation_id(
    mail_settings: Settings, smtp_sink: SmtpSink, mailer_lines: Lines
) -> None:
    email = f"c{uuid.uuid4().hex[:8]}@example.com"
    request_id = f"req-{uuid.uuid4().hex}"
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    with Server(mail_settings) as server, httpx.Client(base_url=server.url, timeout=30) as api:
        registered = await asyncio.to_thread(
            api.post, "/v1/auth/register", json={"email": email, "password": "pw-123456789"}
        )
        assert registered.status_code == 201
        asked = await asyncio.to_thread(
            api.post,
            "/v1/auth/forgot-password",
            json={"email": email},
            headers={"X-Request-ID": request_id, "traceparent": traceparent},
        )
        assert asked.status_code == 202

    async with relaying(mail_settings), mailing(mail_settings):
        # Wait for the reset mail's log line.
        await eventually(
            lambda: any(
                e.get("message") == "mail sent" and e.get("mail_kind") != "welcome"
                for e in mailer_lines.entries
            ),
            within=30,
        )

    (sent,) = [
        e
        for e in mailer_lines.entries
        if e.get("message") == "mail sent" and e.get("correlation_id") == request_id
    ]
    assert sent["traceparent"] == traceparent
    assert sent["mail_kind"] != "welcome"
    assert any(email in r.recipients for r in smtp_sink.received)
