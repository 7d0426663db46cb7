"""The relay on real Redis: what it publishes, with which ids, and what it never publishes."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from commands.identity import Identity
from consumers import messages as consumed
from domain.meta import meta
from ops.bootstrap import WriteSide, build_write_side, event_store_env
from ops.messaging import integration_stream_prefix
from ops.projections import ReadClients
from ops.relay import mail_relay
from ops.settings import Settings
from ops.smtp_sink import SmtpSink
from projections.checkpoints import (
    InMemoryCheckpointStore,
    RedisCheckpointStore,
    checkpoints_of,
)
from projections.envelope import Envelope
from projections.log import EventsourcingLog
from projections.mail_relay.relay import TOPICS, MailRelayProjector, UnknownRecipientError
from tests.fixtures.api import make_settings
from tests.fixtures.mail import relaying
from tests.fixtures.projections import eventually


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, redis_prefix: str) -> Settings:
    return make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'events.sqlite'}", redis_url, redis_prefix
    )


@pytest.fixture
def write(settings: Settings) -> Iterator[WriteSide]:
    side = build_write_side(settings)
    yield side
    side.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _projector(settings: Settings, redis: Redis, generation: int = 1) -> MailRelayProjector:
    clients = ReadClients(mongo=None, db=None, redis=redis)  # type: ignore[arg-type]
    return mail_relay(settings, clients).projector(generation)


def _envelopes(settings: Settings) -> list[Envelope]:
    log = EventsourcingLog.open("Identity", event_store_env(settings))
    try:
        batch = log.read(0, 10_000, TOPICS, log.head())
    finally:
        log.close()
    return [item for item in batch.items if isinstance(item, Envelope)]


async def _published(settings: Settings, redis: Redis, kind: str) -> list[dict[str, Any]]:
    """Each entry's __data__ as the plain JSON a non-FastStream reader sees."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
        integration_stream_prefix(settings) + kind
    )
    return [json.loads(fields[b"__data__"]) for _, fields in entries]


def _register(identity: Identity, email: str, name: str) -> UUID:
    return identity.register(
        email=email, display_name=name, password_hash="argon2-hash", meta=meta(None, "reg-1")
    ).id


async def test_messages_are_plain_json_with_the_event_derived_id_and_no_secret(
    settings: Settings, write: WriteSide, redis: Redis
) -> None:
    user_id = _register(write.identity, "Ada@Example.com", "Ada")
    request = write.identity.request_password_reset(
        "ada@example.com", ttl=timedelta(minutes=30), meta=meta(None, "req-7", "00-ab-cd-01")
    )
    assert request is not None
    projector = _projector(settings, redis)
    await projector.start()
    await projector.apply(_envelopes(settings))

    [welcome] = await _published(settings, redis, "UserRegistered")
    [reset] = await _published(settings, redis, "PasswordResetRequested")
    assert reset["headers"]["message_id"] == reset["data"]["message_id"]
    data = reset["data"]
    assert isinstance(data, dict)
    assert set(data) == {
        "message_id",
        "occurred_at",
        "correlation_id",
        "traceparent",
        "user_id",
        "email",
        "display_name",
        "request_id",
        "expires_at",
    }
    assert (data["user_id"], data["email"], data["display_name"]) == (
        str(user_id),
        "ada@example.com",
        "Ada",
    )
    assert (data["correlation_id"], data["traceparent"]) == ("req-7", "00-ab-cd-01")
    assert data["request_id"] == str(request.claim.request_id)
    assert datetime.fromisoformat(str(data["expires_at"])) == request.claim.expires_at
    # What the mailer needs to derive the token is there; the token, the hash and the secret
    # are not.
    raw = json.dumps([welcome, reset])
    assert "argon2-hash" not in raw
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() not in raw
    # The consumers' own copy of the contract reads what the relay wrote.
    consumed.PasswordResetRequested.model_validate(data)
    consumed.UserRegistered.model_validate(welcome["data"])


async def test_applying_again_republishes_the_same_ids_and_changes_no_contact(
    settings: Settings, write: WriteSide, redis: Redis
) -> None:
    user_id = _register(write.identity, "bo@example.com", "Bo")
    user = write.identity.get_user(user_id)
    user.rename("Bo Renamed", meta=meta(user_id, "ren-1"))
    write.identity.save(user)
    write.identity.request_password_reset(
        "bo@example.com", ttl=timedelta(minutes=5), meta=meta(None, "req")
    )
    envelopes = _envelopes(settings)
    projector = _projector(settings, redis)
    await projector.start()
    await projector.apply(envelopes)
    await projector.apply(envelopes[:1])  # a crash replays the registration, with its old name
    await projector.apply(envelopes)

    resets = await _published(settings, redis, "PasswordResetRequested")
    welcomes = await _published(settings, redis, "UserRegistered")
    assert len(resets) == 2
    assert len(welcomes) == 3
    assert len({r["data"]["message_id"] for r in resets}) == 1
    assert len({w["data"]["message_id"] for w in welcomes}) == 1
    assert {r["data"]["display_name"] for r in resets} == {"Bo Renamed"}


async def test_nothing_outside_the_window_or_already_expired_is_published(
    settings: Settings, write: WriteSide, redis: Redis
) -> None:
    _register(write.identity, "old@example.com", "Old")
    write.identity.request_password_reset(
        "old@example.com", ttl=timedelta(minutes=30), meta=meta(None, "req")
    )
    envelopes = _envelopes(settings)
    later = _projector(settings, redis)
    later.clock = lambda: datetime.now(UTC) + timedelta(days=2)  # a rebuild, two days on
    await later.start()
    await later.apply(envelopes)
    assert await _published(settings, redis, "UserRegistered") == []
    assert await _published(settings, redis, "PasswordResetRequested") == []

    # The address book was still built: a fresh reset for the old user goes out.
    write.identity.request_password_reset(
        "old@example.com", ttl=timedelta(minutes=30), meta=meta(None, "req-2")
    )
    fresh = _envelopes(settings)[-1:]
    now = _projector(settings, redis)
    await now.start()
    await now.apply(fresh)
    [reset] = await _published(settings, redis, "PasswordResetRequested")
    assert reset["data"]["email"] == "old@example.com"

    # A reset whose link has already expired is not worth a mail.
    expired = [
        replace(
            fresh[0],
            originator_version=99,
            event=_with_expiry(fresh[0], datetime.now(UTC) - timedelta(seconds=1)),
        )
    ]
    await now.apply(expired)
    assert len(await _published(settings, redis, "PasswordResetRequested")) == 1


async def test_resuming_from_a_checkpoint_publishes_even_what_is_older_than_the_window(
    settings: Settings, write: WriteSide, redis: Redis
) -> None:
    _register(write.identity, "late@example.com", "Late")
    envelopes = _envelopes(settings)
    clients = ReadClients(mongo=None, db=None, redis=redis)  # type: ignore[arg-type]
    relay = mail_relay(settings, clients)
    # The relay's checkpoint lives on the Redis of its streams, not in the document store.
    assert checkpoints_of(relay, InMemoryCheckpointStore()) is relay.checkpoints
    await relay.checkpoints.advance("mail_relay", 1, "Identity", envelopes[0].position)

    resumed = relay.projector(1)
    resumed.clock = lambda: datetime.now(UTC) + timedelta(days=2)  # down for two days
    await resumed.start()
    await resumed.apply(envelopes)
    [welcome] = await _published(settings, redis, "UserRegistered")
    assert welcome["data"]["email"] == "late@example.com"

    # From position 0 (a rebuild), the same old event is not mailed again.
    rebuilt = relay.projector(2)
    rebuilt.clock = resumed.clock
    await rebuilt.start()
    await rebuilt.apply(envelopes)
    assert len(await _published(settings, redis, "UserRegistered")) == 1


async def test_the_relay_checkpoint_is_in_redis_after_a_run(
    tmp_path: Path, redis_url: str, redis_prefix: str, mongo_url: str, smtp_sink: SmtpSink
) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'events.sqlite'}",
        redis_url,
        redis_prefix,
        mongo_url=mongo_url,
        smtp_url=smtp_sink.url,
    )
    side = build_write_side(settings)
    try:
        _register(side.identity, "ck@example.com", "Ck")
    finally:
        side.close()
    client = Redis.from_url(redis_url)
    store = RedisCheckpointStore(client, redis_prefix)
    try:
        async with relaying(settings):
            await eventually(lambda: _position(store), within=30)
    finally:
        await client.aclose()


async def _position(store: RedisCheckpointStore) -> bool:
    return await store.position("mail_relay", 1, "Identity") > 0


def _skipped(kind: str, reason: str) -> float:
    sample = REGISTRY.get_sample_value(
        "taskledger_mail_skipped_total", {"kind": kind, "reason": reason}
    )
    return sample or 0.0


async def test_every_skipped_mail_is_logged_and_counted_without_the_address(
    settings: Settings, write: WriteSide, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    user_id = _register(write.identity, "gone@example.com", "Gone")
    write.identity.request_password_reset(
        "gone@example.com", ttl=timedelta(minutes=30), meta=meta(None, "req")
    )
    [registered, reset] = _envelopes(settings)
    expired = replace(
        reset,
        originator_version=99,
        event=_with_expiry(reset, datetime.now(UTC) - timedelta(seconds=1)),
    )
    before = {
        key: _skipped(*key)
        for key in (
            ("welcome", "older_than_window"),
            ("password_reset", "older_than_window"),
            ("password_reset", "expired"),
        )
    }
    caplog.set_level(logging.WARNING, logger="taskledger.mail_relay")
    later = _projector(settings, redis)
    later.clock = lambda: datetime.now(UTC) + timedelta(days=2)
    await later.start()
    await later.apply([registered, reset])
    now = _projector(settings, redis)
    await now.apply([expired])

    assert {key: _skipped(*key) - count for key, count in before.items()} == {
        ("welcome", "older_than_window"): 1,
        ("password_reset", "older_than_window"): 1,
        ("password_reset", "expired"): 1,
    }
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all(str(user_id) in r.getMessage() for r in warnings)
    logged = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert "gone@example.com" not in logged
    assert later.version == _projector(settings, redis, generation=2).version == 1


def _with_expiry(envelope: Envelope, expires_at: datetime) -> object:
    changed = copy.copy(envelope.event)
    object.__setattr__(changed, "expires_at", expires_at.isoformat())  # events are frozen
    return changed


async def test_a_reset_for_a_user_never_registered_is_refused_for_parking(
    settings: Settings, write: WriteSide, redis: Redis
) -> None:
    _register(write.identity, "x@example.com", "X")
    write.identity.request_password_reset(
        "x@example.com", ttl=timedelta(minutes=30), meta=meta(None, "req")
    )
    reset = _envelopes(settings)[-1]
    stranger = replace(reset, originator_id=uuid4())
    projector = _projector(settings, redis, generation=3)  # an empty address book
    await projector.start()
    with pytest.raises(UnknownRecipientError):
        await projector.apply([stranger])
    assert await _published(settings, redis, "PasswordResetRequested") == []
