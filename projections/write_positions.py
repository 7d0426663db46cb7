"""Where each user's last successful write landed, per application: read-your-writes' memory.

One Redis hash per user, ``{prefix}rw:{user}`` ``{application: position}``, raised only (two
racing commands of one user cannot lower it) and kept for ``ttl`` seconds after the last write,
far longer than any projection lag worth waiting for.
"""

from __future__ import annotations

import logging
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

    A Redis failure never fails the command that already succeeded, nor the read: the read then
    simply does not wait.
    """

    def __init__(self, redis: Redis, prefix: str, ttl: int = 600) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        self._raise = redis.register_script(RAISE_FIELD)

    def _key(self, user_id: UUID) -> str:
        return f"{self._prefix}rw:{user_id}"

    async def wrote(self, user_id: UUID, application: str, position: int) -> None:
        try:
            await self._raise(keys=[self._key(user_id)], args=[application, position, self._ttl])
        except RedisError as exc:
            log.warning(
                "could not remember %s's write at %s#%d: %s", user_id, application, position, exc
            )

    async def last(self, user_id: UUID) -> dict[str, int]:
        try:
            stored = await self._redis.hgetall(self._key(user_id))
        except RedisError as exc:
            log.warning("could not read %s's last writes: %s", user_id, exc)
            return {}
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in stored.items()}


class InMemoryWritePositions:
    def __init__(self) -> None:
        self._positions: dict[tuple[UUID, str], int] = {}

    async def wrote(self, user_id: UUID, application: str, position: int) -> None:
        key = (user_id, application)
        self._positions[key] = max(self._positions.get(key, 0), position)

    async def last(self, user_id: UUID) -> dict[str, int]:
        return {app: pos for (user, app), pos in self._positions.items() if user == user_id}
