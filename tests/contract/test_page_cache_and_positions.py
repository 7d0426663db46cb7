"""PageCache (with its invalidator), WritePositions and TaskStats, each on memory and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from projections.task_list.memory import InMemoryPageCache, InMemoryTaskCollection
from projections.task_list.projection import CacheInvalidator, TaskListProjection
from projections.task_list.redis import RedisCacheInvalidator, RedisPageCache
from projections.task_stats.memory import InMemoryTaskStats
from projections.task_stats.redis import RedisTaskStats, TaskStatsProjection
from projections.write_positions import InMemoryWritePositions, RedisWritePositions
from queries.tasks.ports import PageCache, TaskStats, WritePositions
from tests.fixtures.read_side import EPOCH, TaskHistory

ALICE, BOB = UUID(int=1), UUID(int=2)


@dataclass
class Cache:
    reader: PageCache
    invalidator: CacheInvalidator


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "memory":
        memory = InMemoryPageCache()
        return Cache(memory, memory.invalidator(1))
    redis: Redis = request.getfixturevalue("redis")
    prefix: str = request.getfixturevalue("redis_prefix")
    return Cache(RedisPageCache(redis, prefix), RedisCacheInvalidator(redis, prefix, 1))


async def test_a_page_is_found_under_the_token_it_was_filed_with(cache: Cache) -> None:
    token = await cache.reader.token(1, ALICE)
    assert token is not None
    assert await cache.reader.get(token, ALICE, "q") is None
    await cache.reader.put(token, ALICE, "q", b"page")
    assert await cache.reader.get(token, ALICE, "q") == b"page"
    assert await cache.reader.get(token, ALICE, "other") is None
    assert await cache.reader.get(token, BOB, "q") is None


async def test_invalidation_raises_only_that_users_version_and_never_lowers_it(
    cache: Cache,
) -> None:
    before = await cache.reader.token(1, ALICE)
    bob_before = await cache.reader.token(1, BOB)
    assert before is not None
    assert bob_before is not None
    await cache.reader.put(before, ALICE, "q", b"old")
    await cache.invalidator.invalidate({ALICE: 7})
    after = await cache.reader.token(1, ALICE)
    assert after is not None
    assert after.version == 7
    assert await cache.reader.get(after, ALICE, "q") is None  # the old page is unreachable
    assert (await cache.reader.token(1, BOB)) == bob_before
    await cache.invalidator.invalidate({ALICE: 3})  # a replayed batch
    assert (await cache.reader.token(1, ALICE)) == after


async def test_every_start_raises_the_epoch(cache: Cache) -> None:
    token = await cache.reader.token(1, ALICE)
    assert token is not None
    await cache.reader.put(token, ALICE, "q", b"page")
    await cache.invalidator.start()
    again = await cache.reader.token(1, ALICE)
    assert again is not None
    assert again.epoch > token.epoch
    assert await cache.reader.get(again, ALICE, "q") is None


async def test_redis_invalidator_that_lost_redis_raises_the_epoch_when_back(
    redis: Redis, redis_prefix: str
) -> None:
    reader = RedisPageCache(redis, redis_prefix)
    token = await reader.token(1, ALICE)
    assert token is not None
    await reader.put(token, ALICE, "q", b"page")
    dead = Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    invalidator = RedisCacheInvalidator(dead, redis_prefix, 1)
    await invalidator.invalidate({ALICE: 5})  # swallowed: the rows are written regardless
    assert await reader.token(1, ALICE) == token  # the raise was lost...
    invalidator._redis = redis  # Redis answers again, after the pause
    invalidator._skip_until = 0.0
    await invalidator.invalidate({})
    again = await reader.token(1, ALICE)
    assert again is not None
    assert again.epoch > token.epoch  # ...and made good wholesale
    assert await reader.get(again, ALICE, "q") is None
    await dead.aclose()


@pytest.fixture(params=["memory", "redis"])
def positions(request: pytest.FixtureRequest) -> WritePositions | Any:
    if request.param == "memory":
        return InMemoryWritePositions()
    redis: Redis = request.getfixturevalue("redis")
    return RedisWritePositions(redis, request.getfixturevalue("redis_prefix"))


async def test_write_positions_remember_the_highest_per_application(positions: Any) -> None:
    assert await positions.last(ALICE) == {}
    await positions.wrote(ALICE, "Tasks", 5)
    await positions.wrote(ALICE, "Tasks", 3)  # a slower concurrent command answered last
    await positions.wrote(ALICE, "Identity", 2)
    await positions.wrote(BOB, "Tasks", 9)
    assert await positions.last(ALICE) == {"Tasks": 5, "Identity": 2}
    assert await positions.last(BOB) == {"Tasks": 9}


async def test_redis_down_never_fails_a_write_or_a_read() -> None:
    dead = Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    positions = RedisWritePositions(dead, "x:")
    await positions.wrote(ALICE, "Tasks", 1)
    # This process still remembers Alice's write: her next read here still waits for it.
    assert await positions.last(ALICE) == {"Tasks": 1}
    assert await positions.last(BOB) == {}
    cache = RedisPageCache(dead, "x:")
    assert await cache.token(1, ALICE) is None
    assert await RedisTaskStats(dead, "x:").counts(1, ALICE, EPOCH) is None
    await dead.aclose()


def history() -> TaskHistory:
    h = TaskHistory()
    due = EPOCH + timedelta(days=1)
    a = h.create(ALICE, status="todo", due=due)
    b = h.create(ALICE, status="in_progress", due=due + timedelta(days=5))
    c = h.create(ALICE, status="todo")
    h.create(BOB, status="todo", due=due)
    h.set_status(a, "done")
    h.edit(b, due_date=EPOCH)
    h.set_status(c, "in_progress")
    h.delete(c)
    d = h.create(ALICE, status="todo", due=EPOCH)
    h.edit(d, due_date=None)
    h.create(ALICE, status="done", due=EPOCH)
    return h


@pytest.fixture(params=["memory", "redis"])
async def stats(request: pytest.FixtureRequest) -> AsyncIterator[TaskStats]:
    envelopes = history().envelopes
    if request.param == "memory":
        memory = InMemoryTaskStats()
        memory.tables[1] = InMemoryTaskCollection(1)
        projector = TaskListProjection(table=lambda g: memory.tables[g]).projector(1)
        await projector.apply(envelopes)
        yield memory
        return
    redis = Redis.from_url(request.getfixturevalue("redis_url"))
    prefix: str = request.getfixturevalue("redis_prefix")
    await TaskStatsProjection(redis, prefix).projector(1).apply(envelopes)
    yield RedisTaskStats(redis, prefix)
    await redis.aclose()


async def test_counters_follow_status_due_date_and_deletion(stats: TaskStats) -> None:
    now = EPOCH + timedelta(days=2)
    alice = await stats.counts(1, ALICE, now)
    assert alice is not None
    # a done, b in progress and overdue (due moved back), c deleted, d undated, e done.
    assert (alice.todo, alice.in_progress, alice.done, alice.total) == (1, 1, 2, 4)
    assert alice.overdue == 1
    bob = await stats.counts(1, BOB, now)
    assert bob is not None
    assert (bob.todo, bob.overdue, bob.total) == (1, 1, 1)
    assert (await stats.counts(1, ALICE, EPOCH - timedelta(days=1))) is not None
    early = await stats.counts(1, ALICE, EPOCH)
    assert early is not None
    assert early.overdue == 0  # due exactly now is not overdue yet
    assert datetime.now(UTC) > now


async def test_a_dead_redis_is_left_alone_after_a_failure_and_own_writes_still_count(
    redis: Redis, redis_prefix: str
) -> None:
    dead = Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    positions = RedisWritePositions(dead, redis_prefix, pause=3600)
    asked: list[str] = []
    hgetall = dead.hgetall

    def counted(key: str) -> Any:
        asked.append(key)
        return hgetall(key)

    dead.hgetall = counted  # type: ignore[method-assign,assignment]
    assert await positions.last(ALICE) == {}
    await positions.wrote(ALICE, "Tasks", 4)
    assert await positions.last(ALICE) == {"Tasks": 4}
    assert len(asked) == 1  # the breaker: no second trip to a server that did not answer
    await dead.aclose()
    # A Redis that lost the write (failover) is topped up by what this process remembers.
    alive = RedisWritePositions(redis, redis_prefix)
    await alive.wrote(ALICE, "Tasks", 7)
    await redis.delete(f"{redis_prefix}rw:{ALICE}")
    await alive.wrote(ALICE, "Identity", 2)
    assert await alive.last(ALICE) == {"Tasks": 7, "Identity": 2}


async def test_the_writes_of_one_batch_are_recorded_in_one_round_trip(
    redis: Redis, redis_prefix: str
) -> None:
    """A group-commit batch wakes its commands together: their positions share one pipeline,
    and each caller returns only once its own write is in Redis (another process sees it)."""
    pipelines = 0
    real_pipeline = redis.pipeline

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal pipelines
        pipelines += 1
        return real_pipeline(*args, **kwargs)

    writer = RedisWritePositions(redis, redis_prefix)
    writer._redis = SimpleNamespace(pipeline=counted, script_load=redis.script_load)  # type: ignore[assignment]
    users = [uuid4() for _ in range(40)]
    await asyncio.gather(
        *(writer.wrote(user, "Tasks", n + 1) for n, user in enumerate(users)),
        writer.wrote(users[0], "Tasks", 100),
        writer.wrote(users[0], "Identity", 7),
    )
    assert pipelines == 1
    elsewhere = RedisWritePositions(redis, redis_prefix)
    assert await elsewhere.last(users[0]) == {"Tasks": 100, "Identity": 7}
    for n, user in enumerate(users[1:], start=1):
        assert await elsewhere.last(user) == {"Tasks": n + 1}
    await writer.wrote(users[1], "Tasks", 50)  # a later batch: a round trip of its own
    assert pipelines == 2
    assert await elsewhere.last(users[1]) == {"Tasks": 50}


async def test_a_redis_that_lost_the_script_still_records_the_writes(
    redis: Redis, redis_prefix: str
) -> None:
    """After a Redis restart the script is gone (NOSCRIPT): loaded again, the batch retried."""
    writer = RedisWritePositions(redis, redis_prefix)
    await writer.wrote(ALICE, "Tasks", 1)
    writer._raise.sha = "0" * 40  # as if Redis had forgotten it
    await asyncio.gather(writer.wrote(ALICE, "Tasks", 4), writer.wrote(BOB, "Tasks", 2))
    elsewhere = RedisWritePositions(redis, redis_prefix)
    assert await elsewhere.last(ALICE) == {"Tasks": 4}
    assert await elsewhere.last(BOB) == {"Tasks": 2}
