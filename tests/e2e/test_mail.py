"""Forgot-password end to end: HTTP -> event store -> relay -> Redis Streams -> mailer -> SMTP.

Everything is real: uvicorn serving the API, the projector host running the relay, FastStream
mailers (one killed with SIGKILL as a ``taskledger serve mailer`` process), aiosmtpd.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from ops.bootstrap import build_write_side
from ops.settings import Settings
from ops.smtp_sink import Received, SmtpSink
from tests.fixtures.api import Server
from tests.fixtures.mail import (
    RESET_URL_BASE,
    fast_mail_settings,
    mailing,
    relaying,
    settings_env,
    steady,
)
from tests.fixtures.projections import eventually
from tests.fixtures.users import PASSWORD

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

RESET_SUBJECT = "Reset your taskledger password"
TOKEN = re.compile(re.escape(RESET_URL_BASE) + r"#token=([A-Za-z0-9_\-.]+)")


@pytest.fixture
def settings(
    tmp_path: Path,
    event_store_url: str,
    redis_url: str,
    redis_prefix: str,
    mongo_url: str,
    smtp_sink: SmtpSink,
) -> Settings:
    return fast_mail_settings(
        tmp_path, event_store_url, redis_url, redis_prefix, mongo_url, smtp_sink.url
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    with Server(settings) as running:
        yield running


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    # Async, so the relay and the mailer in this event loop keep running during a request.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


def _resets(sink: SmtpSink, email: str) -> list[Received]:
    return [
        m
        for m in sink.received
        if m.recipients == (email,) and m.message()["Subject"] == RESET_SUBJECT
    ]


def _token(mail: Received) -> str:
    body = mail.message().get_body(("plain",))
    assert body is not None
    found = TOKEN.search(body.get_content())
    assert found is not None
    return found.group(1)


async def _register(client: httpx.AsyncClient, email: str) -> None:
    response = await client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text


async def test_forgot_password_mails_exactly_one_token_that_resets_the_password(
    settings: Settings, client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    async with relaying(settings), mailing(settings):
        await _register(client, "ada@example.com")
        response = await client.post("/v1/auth/forgot-password", json={"email": "Ada@Example.com"})
        assert response.status_code == 202
        # Wait for the reset mail.
        await eventually(lambda: len(_resets(smtp_sink, "ada@example.com")) == 1, within=30)
        await steady(lambda: len(_resets(smtp_sink, "ada@example.com")) == 1, 1.0)

    token = _token(_resets(smtp_sink, "ada@example.com")[0])
    new_password = "a brand new passphrase"
    reset = await client.post(
        "/v1/auth/reset-password", json={"token": token, "new_password": new_password}
    )
    assert reset.status_code == 204, reset.text
    old = await client.post(
        "/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    new = await client.post(
        "/v1/auth/login", json={"email": "ada@example.com", "password": new_password}
    )
    assert new.status_code == 200
    again = await client.post(
        "/v1/auth/reset-password", json={"token": token, "new_password": "yet another passphrase"}
    )
    assert again.status_code == 400  # the mailed token works once


@pytest.mark.parametrize("event_store_url", ["sqlite"], indirect=True)
async def test_an_unknown_email_gets_202_and_no_mail(
    settings: Settings, client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    async with relaying(settings), mailing(settings):
        await _register(client, "known@example.com")
        unknown = await client.post(
            "/v1/auth/forgot-password", json={"email": "nobody@example.com"}
        )
        known = await client.post("/v1/auth/forgot-password", json={"email": "known@example.com"})
        assert (unknown.status_code, known.status_code) == (202, 202)
        assert unknown.json() == known.json()
        # The later request's mail arriving shows the earlier one had its chance.
        # Wait for the known user's reset mail.
        await eventually(lambda: len(_resets(smtp_sink, "known@example.com")) == 1, within=30)
        await steady(lambda: len(smtp_sink.received) == 2, 1.0)  # welcome + one reset
    assert all("nobody@example.com" not in m.recipients for m in smtp_sink.received)


@pytest.mark.parametrize("event_store_url", ["sqlite"], indirect=True)
async def test_a_slow_mail_server_does_not_slow_forgot_password_down(
    settings: Settings, client: httpx.AsyncClient, smtp_sink: SmtpSink
) -> None:
    smtp_sink.handler.delay = 2.0  # seconds per mail
    async with relaying(settings), mailing(settings):
        await _register(client, "slow@example.com")
        # Wait for the (slow) welcome mail.
        await eventually(lambda: len(smtp_sink.received) == 1, within=30)

        response = await client.post("/v1/auth/forgot-password", json={"email": "slow@example.com"})
        answered_at = time.time()
        assert response.status_code == 202
        assert _resets(smtp_sink, "slow@example.com") == []  # answered before the mail went out
        # Wait for the reset mail.
        await eventually(lambda: len(_resets(smtp_sink, "slow@example.com")) == 1, within=30)
    [mail] = _resets(smtp_sink, "slow@example.com")
    assert mail.accepted_at > answered_at


async def test_a_mailer_killed_mid_stream_leaves_its_mail_to_another_no_duplicates(
    tmp_path: Path, redis_url: str, redis_prefix: str, mongo_url: str, smtp_sink: SmtpSink
) -> None:
    settings = fast_mail_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'events.sqlite'}",
        redis_url,
        redis_prefix,
        mongo_url,
        smtp_sink.url,
        mail_concurrency=1,
        mail_send_timeout=2.0,
    )
    emails = [f"k{n}@example.com" for n in range(30)]
    write = build_write_side(settings)
    try:
        for email in emails:
            write.identity.register(
                email=email,
                display_name="K",
                password_hash="h",
                meta={"actor_id": None, "correlation_id": "c", "traceparent": None},
            )
    finally:
        write.close()

    log = (tmp_path / "victim.log").open("wb")
    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        "serve",
        "mailer",
        env=settings_env(settings),
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        async with relaying(settings):
            # Wait for the victim's first mails.
            await eventually(lambda: len(smtp_sink.received) >= 3, within=60)
            # From now on each 250 waits for the test: kill the victim once its next mail's data
            # arrived, before any 250. That mail was never accepted; the victim held its lease.
            gate = threading.Event()
            smtp_sink.handler.gate = gate
            held = smtp_sink.handler.held
            # Wait for a mail in flight.
            await eventually(lambda: smtp_sink.handler.held > held, within=30)
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            # Wait for the sink to see the kill.
            await eventually(smtp_sink.handler.held_clients_gone, within=30)
            smtp_sink.handler.gate = None
            gate.set()
            delivered_by_victim = len(smtp_sink.received)
            assert delivered_by_victim < len(emails)

            async with mailing(settings, consumer="survivor"):
                # Wait for every mail, via the survivor.
                await eventually(lambda: len(smtp_sink.received) >= len(emails), within=60)
                await steady(lambda: len(smtp_sink.received) == len(emails), 1.5)
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
        log.close()
    assert sorted(r for m in smtp_sink.received for r in m.recipients) == sorted(emails)
