"""Only a body that does not match its schema is parked as malformed; our own bugs are not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from consumers.app import MailerOptions, mailer_router, mailer_streams
from consumers.dead_letters import DeadLetter
from consumers.delivery import MailDelivery
from consumers.ledger import DATA_FIELD, Decision, MailerKeys, RedisDeliveryLedger
from consumers.mail import InMemoryMailer
from consumers.messages import UserRegistered
from consumers.retry import RetryPolicy
from consumers.streams import RedisStreamKeeper
from ops.mailer import dead_letters
from ops.messaging import build_broker, integration_stream_prefix
from ops.settings import Settings
from tests.fixtures.projections import eventually


class BuggyOnceLedger(RedisDeliveryLedger):
    """A bug that raises pydantic's ValidationError (once) while handling a good message."""

    failures = 0

    async def begin(self, message_id: UUID, owner: str) -> Decision:
        if not BuggyOnceLedger.failures:
            BuggyOnceLedger.failures += 1
            UserRegistered.model_validate({})  # raises
        return await super().begin(message_id, owner)


def _entry(data: dict[str, Any]) -> dict[FieldT, EncodableT]:
    envelope = {"headers": {"content-type": "application/json"}, "data": data}
    return {DATA_FIELD: json.dumps(envelope).encode()}


async def _parked(settings: Settings, redis: Redis) -> list[DeadLetter]:
    return await dead_letters(settings, redis).entries()


async def test_a_validation_error_of_ours_leaves_good_mail_pending_and_malformed_mail_is_parked(
    mail_settings: Settings, redis_url: str
) -> None:
    prefix = integration_stream_prefix(mail_settings)
    keys = MailerKeys(mail_settings.redis_prefix)
    redis = Redis.from_url(redis_url)
    mailer = InMemoryMailer()
    delivery = MailDelivery(
        ledger=BuggyOnceLedger(redis, keys, lease_ms=5000, ttl=600, max_attempts=5),
        mailer=mailer,
        policy=RetryPolicy(max_attempts=5, base=0.1, cap=0.2),
        sender="test@example.com",
        reset_key=b"k",
        reset_url_base="http://app.test/reset",
        owner="one",
    )
    options = MailerOptions(prefix, consumer="one", concurrency=2, reclaim_idle_ms=300)
    broker = build_broker(mail_settings)
    broker.include_router(mailer_router(delivery, options))
    await RedisStreamKeeper(redis, keys.group, list(mailer_streams(prefix))).ensure_groups()
    good = {
        "message_id": str(uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "user_id": str(uuid4()),
        "email": "good@example.com",
        "display_name": "Good",
    }
    try:
        await redis.xadd(prefix + "UserRegistered", _entry(good))
        await redis.xadd(prefix + "UserRegistered", _entry({"message_id": "not a uuid"}))
        await broker.start()
        # The bug left the good message pending: it is reclaimed and mailed, never parked.
        await eventually(lambda: [m.to for _, m in mailer.sent] == ["good@example.com"])
        await eventually(lambda: _parked(mail_settings, redis))
        [letter] = await _parked(mail_settings, redis)
    finally:
        await broker.stop()
        await redis.aclose()
    assert BuggyOnceLedger.failures == 1
    assert letter.reason.startswith("malformed message:")
    assert "message_id" in letter.reason
    assert letter.message_id == ""  # the malformed one: not even its id could be read
