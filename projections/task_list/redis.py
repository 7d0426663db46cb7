"""The page cache of ``GET /v1/tasks`` in Redis, invalidated precisely by the projector.

Keys of generation N live under ``{prefix}rm:task_list:v{N}:``:

- ``user:{owner}:version`` — the log position of the last change to that user's tasks, raised
  (never lowered) by the projector after the rows are written;
- ``epoch`` — raised when the projector could not raise a user's version (Redis unreachable):
  every cached page of every user becomes unreachable at once, without a SCAN;
- ``page:{epoch}:{owner}:{version}:{query}`` — a cached page, with a TTL.

A page is only stored by a reader whose MongoDB checkpoint had already passed the version it
read (see queries/tasks), so a page can never be filed under a version newer than its rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError

from projections.envelope import drop_namespace, redis_namespace
from projections.task_list.model import NAME, CacheToken

log = logging.getLogger(__name__)

PAGE_TTL = 300

# Raise a key to a position, never lower it: a replayed batch must not reopen old pages.
RAISE_TO = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def namespace(prefix: str, generation: int) -> str:
    return redis_namespace(prefix, NAME, generation)


class RedisCacheInvalidator:
    """The projector's side: raise the versions of the users whose tasks a batch changed."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        generation: int,
        *,
        timeout: float = 0.5,
        pause: float = 1.0,
    ) -> None:
        self._redis = redis
        self._timeout = timeout
        self._pause = pause
        self._skip_until = 0.0
        self._ns = namespace(prefix, generation)
        self._raise_to = redis.register_script(RAISE_TO)
        # A lost version raise is made good by an epoch raise at the next chance.
        self._epoch_owed = False

    async def start(self) -> None:
        """A projector that died owing an epoch raise cannot say so: every start pays it."""
        self._epoch_owed = True
        await self.invalidate({})

    async def invalidate(self, owners: Mapping[UUID, int]) -> None:
        """Never fails the batch and never holds it long: the rows are written, the cache is
        only an accelerator. After a failure Redis is left alone for ``pause`` seconds."""
        if time.monotonic() < self._skip_until:
            self._epoch_owed = True
            return
        try:
            await asyncio.wait_for(self._raise(owners), self._timeout)
        except (RedisError, TimeoutError) as exc:
            self._epoch_owed = True
            self._skip_until = time.monotonic() + self._pause
            log.warning("task list cache: could not invalidate %d users: %r", len(owners), exc)

    async def _raise(self, owners: Mapping[UUID, int]) -> None:
        if self._epoch_owed:
            await self._redis.incr(self._ns + "epoch")
            self._epoch_owed = False
        if not owners:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for owner, position in owners.items():
                await self._raise_to(
                    keys=[f"{self._ns}user:{owner}:version"], args=[position], client=pipe
                )
            await pipe.execute()

    async def drop(self) -> None:
        await drop_namespace(self._redis, self._ns)


class RedisPageCache:
    """The query side's cache of list pages. Every Redis error reads as a miss, and after one the
    cache is skipped for ``pause`` seconds, so a dead Redis costs requests nothing but that."""

    def __init__(self, redis: Redis, prefix: str, ttl: int = PAGE_TTL, pause: float = 1.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        self._pause = pause
        self._skip_until = 0.0

    def _open(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, exc: RedisError) -> None:
        self._skip_until = time.monotonic() + self._pause
        log.warning("task list cache unavailable for %.1fs: %s", self._pause, exc)

    async def token(self, generation: int, owner_id: UUID) -> CacheToken | None:
        if not self._open():
            return None
        ns = namespace(self._prefix, generation)
        try:
            epoch, version = await self._redis.mget(ns + "epoch", f"{ns}user:{owner_id}:version")
        except RedisError as exc:
            self._failed(exc)
            return None
        return CacheToken(generation, int(epoch or 0), int(version or 0))

    def _key(self, token: CacheToken, owner_id: UUID, query: str) -> str:
        ns = namespace(self._prefix, token.generation)
        return f"{ns}page:{token.epoch}:{owner_id}:{token.version}:{query}"

    async def get(self, token: CacheToken, owner_id: UUID, query: str) -> bytes | None:
        if not self._open():
            return None
        try:
            value = await self._redis.get(self._key(token, owner_id, query))
        except RedisError as exc:
            self._failed(exc)
            return None
        return value.encode() if isinstance(value, str) else value

    async def put(self, token: CacheToken, owner_id: UUID, query: str, page: bytes) -> None:
        if not self._open():
            return
        try:
            await self._redis.set(self._key(token, owner_id, query), page, ex=self._ttl)
        except RedisError as exc:
            self._failed(exc)
