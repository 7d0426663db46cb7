"""One contract for every RateLimiter: in-memory and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from commands.auth.memory import InMemoryRateLimiter
from commands.auth.rate_limits import Limit, RateLimiter
from commands.auth.redis import RedisRateLimiter
from domain.errors import RateLimited


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield InMemoryRateLimiter()
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        yield RedisRateLimiter(client, request.getfixturevalue("redis_prefix"))
    finally:
        await client.aclose()


async def test_hits_up_to_the_limit_pass_and_the_next_is_refused(limiter: RateLimiter) -> None:
    limit = Limit("a", 3, 60)
    for _ in range(3):
        await limiter.check([limit])
        await limiter.hit([limit])
    with pytest.raises(RateLimited) as refused:
        await limiter.hit([limit])
    assert 1 <= refused.value.retry_after <= 60


async def test_check_refuses_once_the_limit_is_used_up(limiter: RateLimiter) -> None:
    limit = Limit("a", 2, 30)
    await limiter.hit([limit])
    await limiter.check([limit])
    await limiter.hit([limit])
    with pytest.raises(RateLimited) as refused:
        await limiter.check([limit])
    assert 1 <= refused.value.retry_after <= 30


async def test_keys_are_counted_apart(limiter: RateLimiter) -> None:
    await limiter.hit([Limit("a", 1, 60)])
    with pytest.raises(RateLimited):
        await limiter.check([Limit("a", 1, 60)])
    await limiter.check([Limit("b", 1, 60)])


async def test_any_exhausted_limit_refuses(limiter: RateLimiter) -> None:
    account, client = Limit("account", 5, 60), Limit("client", 1, 60)
    await limiter.hit([account, client])
    with pytest.raises(RateLimited):
        await limiter.check([account, client])
    with pytest.raises(RateLimited):
        await limiter.hit([account, client])


async def test_clear_forgives_one_key(limiter: RateLimiter) -> None:
    a, b = Limit("a", 1, 60), Limit("b", 1, 60)
    await limiter.hit([a, b])
    await limiter.clear(a)
    await limiter.check([a])
    with pytest.raises(RateLimited):
        await limiter.check([b])


async def test_refund_takes_back_one_attempt(limiter: RateLimiter) -> None:
    limit = Limit("a", 2, 60)
    await limiter.hit([limit])
    await limiter.hit([limit])
    await limiter.refund(limit)
    await limiter.check([limit])
    await limiter.hit([limit])
    with pytest.raises(RateLimited):
        await limiter.check([limit])


async def test_refund_of_nothing_counted_leaves_nothing_behind(limiter: RateLimiter) -> None:
    limit = Limit("a", 1, 60)
    await limiter.refund(limit)
    await limiter.hit([limit])
    with pytest.raises(RateLimited):
        await limiter.hit([limit])


async def test_the_window_ends(limiter: RateLimiter) -> None:
    limit = Limit("a", 1, 1)
    await limiter.hit([limit])
    deadline = time.monotonic() + 10
    while True:
        try:
            await limiter.check([limit])
            break
        except RateLimited:
            assert time.monotonic() < deadline, "still limited 10s after a 1s window"
            await asyncio.sleep(0.1)
    await limiter.hit([limit])


async def test_concurrent_hits_are_all_counted(limiter: RateLimiter) -> None:
    limit = Limit("a", 10, 60)
    results = await asyncio.gather(
        *(limiter.hit([limit]) for _ in range(25)), return_exceptions=True
    )
    assert sum(isinstance(r, RateLimited) for r in results) == 15
