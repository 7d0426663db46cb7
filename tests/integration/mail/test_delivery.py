"""Write side -> relay (projection runner) -> Redis Streams -> mailer -> SMTP, all real."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from commands.identity import Identity
from consumers.dead_letters import DeadLetter
from consumers.ledger import MailerKeys
from consumers.streams import RedisStreamKeeper
from domain.meta import meta
from domain.reset_tokens import reset_key, verify_reset_token
from ops.bootstrap import build_write_side, event_store_env
from ops.mailer import dead_letters
from ops.messaging import integration_stream_prefix
from ops.projections import ReadClients
from ops.relay import mail_relay
from ops.settings import Settings
from ops.smtp_sink import SmtpSink
from projections.envelope import Envelope
from projections.log import EventsourcingLog
from projections.mail_relay.relay import TOPICS
from tests.fixtures.mail import (
    RESET_URL_BASE,
    fast_mail_settings,
    mailing,
    relaying,
    steady,
    taskledger,
)
from tests.fixtures.projections import eventually

TOKEN_LINK = re.compile(re.escape(RESET_URL_BASE) + r"#token=([A-Za-z0-9_\-.]+)")


def _register(identity: Identity, email: str, name: str = "Ada") -> None:
    identity.register(email=email, display_name=name, password_hash="x", meta=meta(None, "t"))


async def test_each_event_becomes_one_mail_and_the_reset_token_verifies(
    mail_settings: Settings, smtp_sink: SmtpSink
) -> None:
    write = build_write_side(mail_settings)
    try:
        _register(write.identity, "ada@example.com", "Ada")
        _register(write.identity, "bob@example.com", "Bob")
        request = write.identity.request_password_reset(
            "ada@example.com", ttl=timedelta(minutes=30), meta=meta(None, "req-1")
        )
        assert request is not None
        async with relaying(mail_settings), mailing(mail_settings):
            # Wait for three mails.
            await eventually(lambda: len(smtp_sink.received) >= 3, within=30)
            await steady(lambda: len(smtp_sink.received) == 3, 1.0)

        by_subject = {(m.recipients, m.message()["Subject"]): m for m in smtp_sink.received}
        assert set(by_subject) == {
            (("ada@example.com",), "Welcome to taskledger"),
            (("bob@example.com",), "Welcome to taskledger"),
            (("ada@example.com",), "Reset your taskledger password"),
        }
        assert len({m.message()["Message-ID"] for m in smtp_sink.received}) == 3
        reset = by_subject[(("ada@example.com",), "Reset your taskledger password")].message()
        text = reset.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = reset.get_body(("html",)).get_content()  # type: ignore[union-attr]
        token = TOKEN_LINK.search(text).group(1)  # type: ignore[union-attr]
        assert token in html
        claim = verify_reset_token(reset_key(mail_settings.secret()), token, datetime.now(UTC))
        assert (claim.user_id, claim.request_id) == (
            request.claim.user_id,
            request.claim.request_id,
        )
        # The write side takes the mailed token: the reset goes through, exactly once.
        write.identity.reset_password(claim, password_hash="new", meta=meta(None, "req-2"))
        assert write.identity.get_user(claim.user_id).password_hash == "new"
    finally:
        write.close()


def _counter(name: str, kind: str) -> float:
    return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0


async def _dead_letters(settings: Settings) -> list[DeadLetter]:
    client = Redis.from_url(settings.redis_url or "")
    try:
        return await dead_letters(settings, client).entries()
    finally:
        await client.aclose()


async def test_smtp_down_for_a_while_then_every_pending_mail_arrives_once(
    mail_settings: Settings, smtp_sink: SmtpSink
) -> None:
    smtp_sink.stop()
    retried = _counter("taskledger_mail_retried_total", "welcome")
    write = build_write_side(mail_settings)
    try:
        emails = [f"u{n}@example.com" for n in range(20)]
        for email in emails:
            _register(write.identity, email)
        async with relaying(mail_settings), mailing(mail_settings):
            # Wait for every mail to fail at least once.
            await eventually(
                lambda: _counter("taskledger_mail_retried_total", "welcome") >= retried + 20,
                within=30,
            )
            assert smtp_sink.received == []
            smtp_sink.start()
            # Wait for all 20 mails.
            await eventually(lambda: len(smtp_sink.received) >= 20, within=30)
            await steady(lambda: len(smtp_sink.received) == 20, 1.5)
    finally:
        write.close()
    assert sorted(r for m in smtp_sink.received for r in m.recipients) == sorted(emails)
    assert await _dead_letters(mail_settings) == []


async def test_a_refused_address_is_parked_at_once_and_retry_redrives_it_once_fixed(
    mail_settings: Settings, smtp_sink: SmtpSink
) -> None:
    smtp_sink.handler.refuse.add("gone@example.com")
    write = build_write_side(mail_settings)
    try:
        _register(write.identity, "gone@example.com")
        _register(write.identity, "here@example.com")
        async with relaying(mail_settings), mailing(mail_settings):
            # Wait for the deliverable mail.
            await eventually(lambda: len(smtp_sink.received) == 1, within=30)
            parked: list[DeadLetter] = []

            async def park() -> None:
                parked[:] = await _dead_letters(mail_settings)

            while not parked:
                await park()
                await asyncio.sleep(0.05)
            [letter] = parked
            assert (letter.kind, letter.attempts) == ("welcome", 1)
            assert "550" in letter.reason

            smtp_sink.handler.refuse.clear()
            status, out, err = await taskledger(mail_settings, "mail", "dead-letters", "retry")
            assert (status, out.strip()) == (0, "re-driven 1 mail(s)"), err
            # Wait for the re-driven mail.
            await eventually(lambda: len(smtp_sink.received) == 2, within=30)
            await steady(lambda: len(smtp_sink.received) == 2, 1.0)
    finally:
        write.close()
    assert smtp_sink.received[1].recipients == ("gone@example.com",)
    assert await _dead_letters(mail_settings) == []


async def test_an_address_that_keeps_deferring_is_parked_after_max_attempts(
    tmp_path: Path, redis_url: str, redis_prefix: str, mongo_url: str, smtp_sink: SmtpSink
) -> None:
    settings = fast_mail_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'events.sqlite'}",
        redis_url,
        redis_prefix,
        mongo_url,
        smtp_sink.url,
        mail_max_attempts=3,
    )
    smtp_sink.handler.defer.add("busy@example.com")
    parked_before = _counter("taskledger_mail_dead_lettered_total", "welcome")
    write = build_write_side(settings)
    try:
        _register(write.identity, "busy@example.com")
        async with relaying(settings), mailing(settings):
            # Wait for the mail to be parked.
            await eventually(
                lambda: _counter("taskledger_mail_dead_lettered_total", "welcome") > parked_before,
                within=30,
            )
    finally:
        write.close()
    status, out, err = await taskledger(settings, "mail", "dead-letters", "list", "--json")
    assert status == 0, err
    [listed] = [json.loads(line) for line in out.splitlines()]
    assert listed["attempts"] == 3
    assert "450" in listed["reason"]
    assert smtp_sink.received == []

    status, out, err = await taskledger(settings, "mail", "dead-letters", "purge")
    assert status != 0
    assert "--all" in err
    status, out, err = await taskledger(settings, "mail", "dead-letters", "purge", listed["id"])
    assert (status, out.strip()) == (0, "purged 1 mail(s)"), err
    assert await _dead_letters(settings) == []


async def test_two_mailers_in_one_group_send_each_of_500_mails_once(
    mail_settings: Settings, smtp_sink: SmtpSink, redis_url: str
) -> None:
    write = build_write_side(mail_settings)
    try:
        emails = [f"many{n}@example.com" for n in range(500)]
        for email in emails:
            _register(write.identity, email)
        async with (
            relaying(mail_settings),
            mailing(mail_settings, consumer="mailer-one"),
            mailing(mail_settings, consumer="mailer-two"),
        ):
            # Wait for 500 mails.
            await eventually(lambda: len(smtp_sink.received) >= 500, within=120)
            await steady(lambda: len(smtp_sink.received) == 500, 1.5)
    finally:
        write.close()
    assert sorted(r for m in smtp_sink.received for r in m.recipients) == sorted(emails)
    assert len({m.message()["Message-ID"] for m in smtp_sink.received}) == 500
    # Both took their share: the ledger remembers which mailer sent each message.
    client = Redis.from_url(redis_url)
    try:
        keys = MailerKeys(mail_settings.redis_prefix)
        states = [v async for v in _states(client, keys)]
    finally:
        await client.aclose()
    senders = Counter(state.removeprefix("sent:") for state in states)
    assert sum(senders.values()) == 500
    assert set(senders) == {"mailer-one", "mailer-two"}


async def _states(client: Redis, keys: MailerKeys) -> AsyncIterator[str]:
    async for key in client.scan_iter(match=keys.state("*"), count=1000):
        value = await client.get(key)
        assert isinstance(value, bytes)
        yield value.decode()


async def test_a_republished_or_redelivered_message_sends_no_second_mail(
    mail_settings: Settings, smtp_sink: SmtpSink, redis_url: str
) -> None:
    write = build_write_side(mail_settings)
    try:
        for email in ("a@example.com", "b@example.com", "c@example.com"):
            _register(write.identity, email)
        async with relaying(mail_settings), mailing(mail_settings):
            # Wait for three mails.
            await eventually(lambda: len(smtp_sink.received) == 3, within=30)
            # A rebuild of the relay publishes every event again, same ids, new entries.
            await _republish_everything(mail_settings)
            await steady(lambda: len(smtp_sink.received) == 3, 2.0)
            client = Redis.from_url(redis_url)
            try:
                stream = integration_stream_prefix(mail_settings) + "UserRegistered"
                assert await client.xlen(stream) == 6
                pending = await client.xpending(
                    stream, MailerKeys(mail_settings.redis_prefix).group
                )
                assert pending["pending"] == 0  # the copies were acknowledged, not left behind
            finally:
                await client.aclose()
    finally:
        write.close()


async def _republish_everything(settings: Settings) -> None:
    log = EventsourcingLog.open("Identity", event_store_env(settings))
    client = Redis.from_url(settings.redis_url or "")
    try:
        batch = log.read(0, 1000, TOPICS, log.head())
        envelopes = [e for e in batch.items if isinstance(e, Envelope)]
        clients = ReadClients(mongo=None, db=None, redis=client)  # type: ignore[arg-type]
        projector = mail_relay(settings, clients).projector(2)
        await projector.start()
        await projector.apply(envelopes)
    finally:
        await client.aclose()
        log.close()


async def test_messages_published_before_any_mailer_ran_are_mailed_then_trimmed(
    mail_settings: Settings, smtp_sink: SmtpSink, redis_url: str
) -> None:
    write = build_write_side(mail_settings)
    client = Redis.from_url(redis_url)
    stream = integration_stream_prefix(mail_settings) + "UserRegistered"
    try:
        for email in ("early1@example.com", "early2@example.com"):
            _register(write.identity, email)
        async with relaying(mail_settings):
            for _ in range(600):
                if await client.xlen(stream) == 2:
                    break
                await asyncio.sleep(0.05)
        assert await client.xlen(stream) == 2  # on the broker before any mailer group exists
        async with mailing(mail_settings):
            # Wait for the early mails.
            await eventually(lambda: len(smtp_sink.received) == 2, within=30)
            keeper = RedisStreamKeeper(
                client, MailerKeys(mail_settings.redis_prefix).group, [stream]
            )
            await keeper.trim()
            assert await client.xlen(stream) == 0  # read and acknowledged: nothing left to keep
    finally:
        write.close()
        await client.aclose()


async def test_the_token_is_never_logged_even_when_sending_fails(
    mail_settings: Settings, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    smtp_sink.stop()
    write = build_write_side(mail_settings)
    try:
        _register(write.identity, "quiet@example.com")
        write.identity.request_password_reset(
            "quiet@example.com", ttl=timedelta(minutes=30), meta=meta(None, "req-q")
        )
        async with relaying(mail_settings), mailing(mail_settings):
            # Wait for a failed attempt to be logged.
            await eventually(lambda: "retrying" in caplog.text, within=30)
            smtp_sink.start()
            # Wait for both mails.
            await eventually(lambda: len(smtp_sink.received) == 2, within=30)
    finally:
        write.close()
    [reset] = [m for m in smtp_sink.received if "Reset" in str(m.message()["Subject"])]
    body = reset.message().get_body(("plain",))
    assert body is not None
    found = TOKEN_LINK.search(body.get_content())
    assert found is not None
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert "mail sent" in logged
    assert found.group(1) not in logged
    assert found.group(1).split(".")[1] not in logged  # not even the signature half
