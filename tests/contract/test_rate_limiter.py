"""One contract for every RateLimiter: in-memory and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from commands.auth.memory import InMemoryRateLimiter
from commands.auth.rate_limits import Limit, RateLimiter, Slowdown
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


# --- slowdowns: delay, never refuse for good -------------------------------------------------


async def test_a_slowdown_lets_the_free_attempts_through_then_asks_to_wait(
    limiter: RateLimiter,
) -> None:
    slowdown = Slowdown("s", free=3, base=30, cap=600, window=60)
    for _ in range(3):
        await limiter.slow(slowdown)
    with pytest.raises(RateLimited) as slowed:
        await limiter.slow(slowdown)
    assert 29 <= slowed.value.retry_after <= 30
    # A refused attempt counts nothing: the wait does not grow while the caller is refused.
    with pytest.raises(RateLimited) as again:
        await limiter.slow(slowdown)
    assert again.value.retry_after <= 30


async def test_each_attempt_past_the_free_ones_doubles_the_delay(limiter: RateLimiter) -> None:
    slowdown = Slowdown("s", free=1, base=0.2, cap=600, window=60)
    await limiter.slow(slowdown)
    for waited in (0.2, 0.4, 0.8):
        with pytest.raises(RateLimited):
            await limiter.slow(slowdown)
        await asyncio.sleep(waited + 0.05)
        await limiter.slow(slowdown)
    with pytest.raises(RateLimited) as slowed:
        await limiter.slow(slowdown)
    assert slowed.value.retry_after == 2  # 1.6 s, rounded up


async def test_a_slowdown_is_capped_and_cleared(limiter: RateLimiter) -> None:
    slowdown = Slowdown("s", free=1, base=1000, cap=5, window=60)
    await limiter.slow(slowdown)
    with pytest.raises(RateLimited) as slowed:
        await limiter.slow(slowdown)
    assert 4 <= slowed.value.retry_after <= 5
    await limiter.clear(slowdown)
    await limiter.slow(slowdown)


async def test_a_refund_takes_back_one_slowed_attempt(limiter: RateLimiter) -> None:
    slowdown = Slowdown("s", free=2, base=30, cap=600, window=60)
    await limiter.slow(slowdown)
    await limiter.slow(slowdown)
    await limiter.refund(slowdown)
    await limiter.slow(slowdown)
    with pytest.raises(RateLimited):
        await limiter.slow(slowdown)
