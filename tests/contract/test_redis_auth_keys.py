"""What only the Redis adapters promise: every key under the prefix, and nothing kept forever."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from commands.auth.rate_limits import Limit, Slowdown
from commands.auth.redis import RedisRateLimiter, RedisSessionStore
from commands.auth.sessions import Session


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_every_key_is_under_the_prefix_and_expires(client: Redis, redis_prefix: str) -> None:
    sessions, limiter = (
        RedisSessionStore(client, redis_prefix),
        RedisRateLimiter(client, redis_prefix),
    )
    user = uuid4()
    now = int(time.time())
    await sessions.open(Session(user, "s1", "r1", 1, now, now + 900), 600)
    await sessions.open(Session(user, "s2", "r1", 1, now, now + 900), 600)
    await sessions.rotate(user, "s1", "r1", "r2", now=now, idle=600)
    await sessions.sessions(user)
    await sessions.revoke_all(user, before_version=2, ttl=600)
    await sessions.open(Session(user, "s3", "r1", 2, now, now + 900), 600)
    await limiter.hit([Limit("login:client:127.0.0.1", 5, 60)])
    await limiter.slow(Slowdown("login:account:x", 1, 1.0, 60, 60))
    keys = [key async for key in client.scan_iter(match=redis_prefix + "*")]
    assert keys, "the adapters wrote nothing"
    everything = [key async for key in client.scan_iter(match=f"*{user}*")]
    assert all(key.decode().startswith(redis_prefix) for key in everything)
    for key in keys:
        assert await client.ttl(key) > 0, key
