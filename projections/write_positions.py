"""Where each user's last successful write landed, per application: read-your-writes' memory.

One Redis hash per user, ``{prefix}rw:{user}`` ``{application: position}``, raised only (two
racing commands of one user cannot lower it) and kept for ``ttl`` seconds after the last write,
far longer than any projection lag worth waiting for.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RAISE_FIELD = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if current < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisWritePositions:
    """Both sides of read-your-writes: commands record (``wrote``), queries look up (``last``).

    A Redis failure never fails the command that already succeeded, nor the read. Each process
    also remembers the last writes of its ``remember`` most recent writers: while Redis does not
    answer (and for ``pause`` seconds after each failure, so a blackholed Redis costs no request
    a timeout) reads wait for what this process remembers, and a Redis that lost a write is
    topped up from it.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        ttl: int = 600,
        *,
        pause: float = 1.0,
        remember: int = 10_000,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        self._pause = pause
        self._skip_until = 0.0
        self._remember = remember
        self._recent: OrderedDict[UUID, dict[str, int]] = OrderedDict()
        self._raise = redis.register_script(RAISE_FIELD)

    def _key(self, user_id: UUID) -> str:
        return f"{self._prefix}rw:{user_id}"

    def _note(self, user_id: UUID, positions: Mapping[str, int]) -> dict[str, int]:
        known = self._recent.pop(user_id, {})
        for application, position in positions.items():
            known[application] = max(known.get(application, 0), position)
        self._recent[user_id] = known
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)
        return dict(known)

    def _failed(self, what: str, exc: RedisError) -> None:
        self._skip_until = time.monotonic() + self._pause
        log.warning("%s (Redis left alone for %.1fs): %s", what, self._pause, exc)

    async def wrote(self, user_id: UUID, application: str, position: int) -> None:
        self._note(user_id, {application: position})
        if time.monotonic() < self._skip_until:
            return
        try:
            await self._raise(keys=[self._key(user_id)], args=[application, position, self._ttl])
        except RedisError as exc:
            self._failed(f"could not remember {user_id}'s write at {application}#{position}", exc)

    async def last(self, user_id: UUID) -> dict[str, int]:
        if time.monotonic() < self._skip_until:
            return dict(self._recent.get(user_id, {}))
        try:
            stored = await self._redis.hgetall(self._key(user_id))
        except RedisError as exc:
            self._failed(f"could not read {user_id}'s last writes", exc)
            return dict(self._recent.get(user_id, {}))
        found = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in stored.items()}
        if user_id not in self._recent:
            return found
        return self._note(user_id, found)


class InMemoryWritePositions:
    def __init__(self) -> None:
        self._positions: dict[tuple[UUID, str], int] = {}

    async def wrote(self, user_id: UUID, application: str, position: int) -> None:
        key = (user_id, application)
        self._positions[key] = max(self._positions.get(key, 0), position)

    async def last(self, user_id: UUID) -> dict[str, int]:
        return {app: pos for (user, app), pos in self._positions.items() if user == user_id}
