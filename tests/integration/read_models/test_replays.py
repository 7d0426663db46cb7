"""Any crash pattern equals one clean pass: duplicated batches, crashes between a batch and its
checkpoint, and rewinds replay events, and the read models must not notice.

Compares whole MongoDB collections, the in-memory reference, and every Redis key of the
task_list and task_stats generations built by a clean pass and by a chaotic one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from projections.envelope import Envelope, Projector
from projections.task_list.memory import InMemoryTaskCollection
from projections.task_list.model import STATUSES
from projections.task_list.mongo import MongoTaskCollection
from projections.task_list.projection import TaskListProjection
from projections.task_list.redis import RedisCacheInvalidator
from projections.task_list.redis import namespace as list_namespace
from projections.task_stats.redis import RedisTaskStats, TaskStatsProjection
from projections.task_stats.redis import namespace as stats_namespace
from tests.fixtures.read_side import EPOCH, TaskHistory

OWNERS = (UUID(int=1), UUID(int=2))
PRIORITIES = ("low", "medium", "high")
LABELS = ("home", "work", "urgent")
NOW = EPOCH + timedelta(days=3)

dues = st.none() | st.integers(-3, 9).map(lambda d: EPOCH + timedelta(days=d, hours=5))
creates = st.tuples(
    st.just("create"),
    st.sampled_from(OWNERS),
    st.sampled_from(STATUSES),
    st.sampled_from(PRIORITIES),
    dues,
    st.lists(st.sampled_from(LABELS), max_size=3),
)
edits = st.tuples(
    st.just("edit"),
    st.integers(0, 30),
    st.fixed_dictionaries(
        {},
        optional={
            "title": st.sampled_from(("a", "b", "Milk")),
            "description": st.sampled_from(("", "x")),
            "priority": st.sampled_from(PRIORITIES),
            "due_date": dues,
            "labels": st.lists(st.sampled_from(LABELS), max_size=3, unique=True),
        },
    ),
)
statuses = st.tuples(st.just("status"), st.integers(0, 30), st.sampled_from(STATUSES))
deletes = st.tuples(st.just("delete"), st.integers(0, 30))
operations = st.lists(creates | edits | statuses | deletes, min_size=1, max_size=40)
schedules = st.lists(
    st.tuples(
        st.integers(1, 6),
        st.sampled_from(("ok", "ok", "crash", "twice", "rewind", "stale")),
        st.floats(0, 1),
    ),
    max_size=25,
)


def history_of(ops: Sequence[tuple[Any, ...]]) -> list[Envelope]:
    history = TaskHistory()
    for op in ops:
        live = sorted(history.live)
        if op[0] == "create":
            _, owner, status, priority, due, labels = op
            history.create(
                owner, title="t", status=status, priority=priority, due=due, labels=labels
            )
        elif not live:
            continue
        elif op[0] == "edit" and op[2]:
            history.edit(live[op[1] % len(live)], **op[2])
        elif op[0] == "status":
            history.set_status(live[op[1] % len(live)], op[2])
        elif op[0] == "delete":
            history.delete(live[op[1] % len(live)])
    return history.envelopes


async def clean_pass(projectors: Sequence[Projector], envelopes: Sequence[Envelope]) -> None:
    for projector in projectors:
        await projector.start()
        for start in range(0, len(envelopes), 4):
            await projector.apply(envelopes[start : start + 4])


async def chaotic_pass(
    fresh: Callable[[], Sequence[Projector]],
    envelopes: Sequence[Envelope],
    schedule: Sequence[tuple[int, str, float]],
) -> None:
    """The runner's contract under failure: batches from the checkpoint, in order; a crash
    loses the checkpoint advance, a rewind goes back to any earlier checkpoint, and a slower
    second writer (a rebuild and the service tailing one generation) applies old batches late,
    even after the last one."""
    projectors = fresh()
    for p in projectors:
        await p.start()
    checkpoint = 0
    steps = itertools.chain(schedule, itertools.repeat((3, "ok", 0.0)))
    while checkpoint < len(envelopes):
        size, action, back = next(steps)
        batch = envelopes[checkpoint : checkpoint + size]
        for p in projectors:
            await p.apply(batch)
        if action == "crash":
            projectors = fresh()  # a new process: nothing remembered, checkpoint not moved
            for p in projectors:
                await p.start()
            continue
        if action == "twice":
            for p in projectors:
                await p.apply(batch)
        checkpoint += len(batch)
        if action == "rewind":
            checkpoint = int(checkpoint * back)
        elif action == "stale":
            old = int(checkpoint * back)
            for p in projectors:
                await p.apply(envelopes[old : old + size])
    for _, _, back in schedule[-3:]:
        old = int(len(envelopes) * back)
        for p in projectors:
            await p.apply(envelopes[old : old + 3])


def text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


async def redis_dump(redis: Redis, ns: str) -> dict[str, Any]:
    dump: dict[str, Any] = {}
    async for key in redis.scan_iter(match=ns + "*", count=1000):
        name = text(key)[len(ns) :]
        kind = text(await redis.type(key))
        if kind == "hash":
            dump[name] = {k: v for k, v in (await redis.hgetall(key)).items() if v != b"0"}
        elif kind == "zset":
            dump[name] = await redis.zrange(key, 0, -1, withscores=True)
        elif name != "epoch":  # raised by every projector start: not state
            dump[name] = await redis.get(key)
    return {k: v for k, v in dump.items() if v not in ({}, [])}


class Run:
    def __init__(self, mongo_url: str, redis_url: str, prefix: str) -> None:
        self.mongo_url, self.redis_url, self.prefix = mongo_url, redis_url, prefix
        self.examples = itertools.count(1)

    async def check(self, envelopes: list[Envelope], schedule: Any) -> None:
        example = next(self.examples)
        clean, chaos = 2 * example, 2 * example + 1
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.mongo_url, tz_aware=True)
        redis = Redis.from_url(self.redis_url)
        db = client.get_default_database()
        memory = {clean: InMemoryTaskCollection(clean), chaos: InMemoryTaskCollection(chaos)}
        lists = TaskListProjection(
            table=lambda g: MongoTaskCollection(db, g),
            cache=lambda g: RedisCacheInvalidator(redis, self.prefix, g),
        )
        in_memory = TaskListProjection(table=lambda g: memory[g])
        stats = TaskStatsProjection(redis, self.prefix)

        def projectors(generation: int) -> list[Projector]:
            return [
                lists.projector(generation),
                in_memory.projector(generation),
                stats.projector(generation),
            ]

        try:
            await clean_pass(projectors(clean), envelopes)
            await chaotic_pass(lambda: projectors(chaos), envelopes, schedule)

            reference = await memory[clean].documents()
            assert await memory[chaos].documents() == reference
            assert await MongoTaskCollection(db, clean).documents() == reference
            assert await MongoTaskCollection(db, chaos).documents() == reference
            for ns in (stats_namespace, list_namespace):
                assert await redis_dump(redis, ns(self.prefix, chaos)) == await redis_dump(
                    redis, ns(self.prefix, clean)
                )
            counters = RedisTaskStats(redis, self.prefix)
            for owner in OWNERS:
                exact = await memory[clean].counts(owner, NOW)
                assert await counters.counts(chaos, owner, NOW) == exact
                assert await MongoTaskCollection(db, chaos).counts(owner, NOW) == exact
        finally:
            for generation in (clean, chaos):
                await lists.drop(generation)
                await stats.drop(generation)
            await redis.aclose()
            await client.close()


def test_any_crash_pattern_equals_one_clean_pass(
    mongo_url: str, redis_url: str, redis_prefix: str
) -> None:
    run = Run(mongo_url, redis_url, redis_prefix)

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(ops=operations, schedule=schedules)
    def check(ops: list[tuple[Any, ...]], schedule: list[tuple[int, str, float]]) -> None:
        asyncio.run(run.check(history_of(ops), schedule))

    check()
