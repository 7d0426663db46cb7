"""The stream keeper on real Redis: groups from the start; only settled history is trimmed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from consumers.streams import RedisStreamKeeper


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_group_created_late_still_sees_the_first_entry(
    redis: Redis, redis_prefix: str
) -> None:
    stream = redis_prefix + "s"
    first = await redis.xadd(stream, {"n": "1"})
    keeper = RedisStreamKeeper(redis, redis_prefix + "g", [stream])
    await keeper.ensure_groups()
    await keeper.ensure_groups()  # idempotent: every mailer calls it on start
    read: Any = await redis.xreadgroup(redis_prefix + "g", "c", {stream: ">"})
    assert [entry[0] for entry in read[0][1]] == [first]


async def test_trimming_keeps_what_any_group_has_not_settled(
    redis: Redis, redis_prefix: str
) -> None:
    stream = redis_prefix + "s"
    ids = [await redis.xadd(stream, {"n": str(n)}) for n in range(4)]
    mailer = RedisStreamKeeper(redis, redis_prefix + "mailer", [stream])
    other = RedisStreamKeeper(redis, redis_prefix + "other", [stream])
    await mailer.ensure_groups()
    await other.ensure_groups()
    await redis.xreadgroup(redis_prefix + "mailer", "c", {stream: ">"}, count=3)
    await redis.xack(stream, redis_prefix + "mailer", ids[0], ids[2])  # ids[1] stays pending
    await redis.xreadgroup(redis_prefix + "other", "c", {stream: ">"})
    await redis.xack(stream, redis_prefix + "other", *ids)

    await mailer.trim()
    entries: Any = await redis.xrange(stream)
    remaining = [entry[0] for entry in entries]
    assert remaining == ids[1:]  # from the oldest pending on; ids[3] is still unread by one


async def test_mailers_long_gone_with_nothing_pending_leave_the_group(
    redis: Redis, redis_prefix: str
) -> None:
    stream, group = redis_prefix + "s", redis_prefix + "g"
    keeper = RedisStreamKeeper(redis, group, [stream], forget_after_ms=0)
    await keeper.ensure_groups()
    await redis.xadd(stream, {"n": "1"})
    await redis.xreadgroup(group, "gone", {stream: ">"})
    await redis.xreadgroup(group, "holding", {stream: "0"})  # joins, holds nothing
    entries: Any = await redis.xreadgroup(group, "busy", {stream: ">"})
    assert entries == []  # "gone" holds the only entry
    pending: Any = await redis.xpending_range(stream, group, "-", "+", 10)
    await redis.xclaim(stream, group, "busy", 0, [pending[0]["message_id"]])

    await keeper.trim()
    consumers: Any = await redis.xinfo_consumers(stream, group)
    assert [c["name"] for c in consumers] == [b"busy"]  # the one with a pending entry stays
