"""The task queries: read-your-writes, the page cache, and the fallbacks when Redis is down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.errors import TaskNotFound
from projections.task_list.model import TaskCounts, TaskPage, TaskQuery, TaskRow
from projections.task_stats.redis import NAME as TASK_STATS
from projections.upstreams import TASKS
from queries.metrics import CACHE_REQUESTS
from queries.tasks.ports import (
    Generations,
    PageCache,
    TaskReader,
    TaskReadModel,
    TaskStats,
    WritePositions,
)

UPSTREAM = TASKS
# Between checkpoint reads while waiting for a projection: soon at first (the usual lag is a
# few ms), then less often, so requests that wait long do not hammer the store.
POLL_MIN = 0.005
POLL_MAX = 0.05


async def wait_until(
    checkpoint: Callable[[], Awaitable[int]], target: int, within: float, poll: float = POLL_MIN
) -> int:
    """Poll ``checkpoint()`` until it reaches ``target`` or ``within`` seconds pass.

    Returns the last position seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        position: int = await checkpoint()
        if position >= target or loop.time() >= deadline:
            return position
        await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))
        poll = min(poll * 2, POLL_MAX)


class _CountersDown(Exception):
    """The counters cannot answer now: count in the document store instead."""


@dataclass
class TaskQueries:
    read_model: TaskReadModel
    stats: TaskStats
    cache: PageCache
    positions: WritePositions
    generations: Generations
    # How long a read waits for the projection to pass the reader's own last write.
    timeout: float = 2.0

    async def _own_write(self, user: UUID) -> int:
        return (await self.positions.last(user)).get(UPSTREAM, 0)

    async def _caught_up(self, reader: TaskReader, own: int, within: float | None = None) -> int:
        wait = self.timeout if within is None else within
        return await wait_until(lambda: reader.checkpoint(UPSTREAM), own, wait)

    async def task(self, user: UUID, task_id: UUID) -> TaskRow:
        """A user sees only their own live tasks; anything else is not found."""
        own = await self._own_write(user)
        async with self.read_model.reading() as reader:
            if own:
                await self._caught_up(reader, own)
            row = await reader.get(user, task_id)
        if row is None:
            raise TaskNotFound(str(task_id))
        return row

    async def page(
        self, user: UUID, query: TaskQuery, key: str, render: Callable[[TaskPage], bytes]
    ) -> bytes:
        """The user's tasks, one page. A cached page is served only when its version covers the
        user's own last write, and filed only under a version its rows include."""
        own = await self._own_write(user)
        token = await self.cache.token(await self.read_model.generation(), user)
        if token is not None and token.version >= own:
            cached = await self.cache.get(token, user, key)
            if cached is not None:
                CACHE_REQUESTS.labels("task_pages", "hit").inc()
                return cached
        CACHE_REQUESTS.labels("task_pages", "miss").inc()
        async with self.read_model.reading() as reader:
            seen = await self._caught_up(reader, own)
            body = render(await reader.page(user, query))
        if token is not None and token.generation == reader.generation and token.version <= seen:
            await self.cache.put(token, user, key, body)
        return body

    async def counts(self, user: UUID, now: datetime | None = None) -> TaskCounts:
        """Counters from Redis once they include the user's last write; else counted in MongoDB."""
        now = now or datetime.now(UTC)
        own = await self._own_write(user)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout  # one wait, whichever store answers
        # Inside the reader's scope, a document store failure (checkpoints, aliases) is a 503.
        async with self.read_model.reading() as reader:
            generation = await self.generations.of(TASK_STATS)
            stats = self.stats

            async def counters_checkpoint() -> int:
                reached = await stats.checkpoint(generation, UPSTREAM)
                if reached is None:
                    raise _CountersDown
                return reached

            # The counters' checkpoint lives in Redis with them: a Redis that lost recent
            # writes lost it too, so it never claims counts it does not hold.
            try:
                reached = await wait_until(counters_checkpoint, own, self.timeout)
            except _CountersDown:
                reached = -1
            if reached >= own:
                counts = await self.stats.counts(generation, user, now)
                if counts is not None:
                    CACHE_REQUESTS.labels(TASK_STATS, "hit").inc()
                    return counts
            CACHE_REQUESTS.labels(TASK_STATS, "miss").inc()
            await self._caught_up(reader, own, max(0.0, deadline - loop.time()))
            return await reader.counts(user, now)


def encode_page(page: TaskPage, next_cursor: str | None, item: Callable[[TaskRow], Any]) -> bytes:
    return json.dumps(
        {"items": [item(row) for row in page.items], "next_cursor": next_cursor},
        separators=(",", ":"),
    ).encode()
