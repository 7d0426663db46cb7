"""Where each user's last successful write landed, per application: read-your-writes' memory.

One Redis hash per user, ``{prefix}rw:{user}`` ``{application: position}``, raised only (two
racing commands of one user cannot lower it) and kept for ``ttl`` seconds after the last write,
far longer than any projection lag worth waiting for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

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

    The writes of one group-commit batch wake their commands in the same turn of the event
    loop: ``wrote`` gathers what arrives in one turn and records it in one pipeline, one round
    trip per batch rather than one per command; each caller returns once its write is recorded.
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
        # The writes gathered in this turn of the loop, and the future their callers await.
        self._gathered: dict[tuple[UUID, str], int] = {}
        self._recorded: asyncio.Future[None] | None = None
        self._loaded = False

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
        key = (user_id, application)
        self._gathered[key] = max(self._gathered.get(key, 0), position)
        if self._recorded is None:
            loop = asyncio.get_running_loop()
            self._recorded = loop.create_future()
            # After the callbacks already queued: the rest of the batch's commands.
            loop.call_soon(self._record, self._recorded)
        # Shielded: a caller that goes away does not take the others' round trip with it.
        await asyncio.shield(self._recorded)

    def _record(self, recorded: asyncio.Future[None]) -> None:
        writes, self._gathered, self._recorded = self._gathered, {}, None
        task = asyncio.get_running_loop().create_task(self._pipeline(writes))
        task.add_done_callback(lambda done: _settle(recorded, done))

    async def _pipeline(self, writes: dict[tuple[UUID, str], int]) -> None:
        # Plain EVALSHA in the pipeline: a script handed to a pipeline makes it ask SCRIPT
        # EXISTS first, a second round trip on every batch. Loaded once here instead, and again
        # if Redis lost it (a restart); raising a position twice changes nothing.
        try:
            if not self._loaded:
                self._raise.sha = await self._redis.script_load(RAISE_FIELD)
                self._loaded = True
            try:
                await self._evalshas(writes)
            except NoScriptError:
                self._raise.sha = await self._redis.script_load(RAISE_FIELD)
                await self._evalshas(writes)
        except RedisError as exc:
            self._failed(f"could not remember {len(writes)} writes", exc)

    async def _evalshas(self, writes: dict[tuple[UUID, str], int]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for (user_id, application), position in writes.items():
                pipe.evalsha(
                    self._raise.sha, 1, self._key(user_id), application, position, self._ttl
                )
            await pipe.execute()

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


def _settle(recorded: asyncio.Future[None], done: asyncio.Future[None]) -> None:
    if recorded.done():
        return
    if done.cancelled():
        recorded.cancel()
    elif (error := done.exception()) is not None:
        recorded.set_exception(error)
    else:
        recorded.set_result(None)


class InMemoryWritePositions:
    def __init__(self) -> None:
        self._positions: dict[tuple[UUID, str], int] = {}

    async def wrote(self, user_id: UUID, application: str, position: int) -> None:
        key = (user_id, application)
        self._positions[key] = max(self._positions.get(key, 0), position)

    async def last(self, user_id: UUID) -> dict[str, int]:
        return {app: pos for (user, app), pos in self._positions.items() if user == user_id}
