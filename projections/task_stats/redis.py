"""The ``task_stats`` projection: per-user counters in Redis, kept exact by one Lua script.

Keys of generation N, under ``{prefix}rm:task_stats:v{N}:``:

- ``task:{id}`` — hash ``{v: version, o: owner, s: status, d: due epoch seconds or "-",
  x: "1" once deleted}``: what the task contributes now. Deleted tasks keep it (a tombstone),
  so a replayed creation cannot count them again.
- ``user:{owner}:counts`` — hash ``{todo, in_progress, done}`` of live tasks;
- ``user:{owner}:due`` — sorted set of the user's live, not-done tasks scored by due time:
  overdue is ``ZCOUNT -inf (now``.

The script compares the stored version with the change's and does nothing unless the change is
newer; otherwise it takes back the task's old contribution and adds the new one. So replays,
duplicated batches and crashes between batch and checkpoint leave the counters exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError

from projections.checkpoints import RedisCheckpointStore
from projections.envelope import Envelope, drop_namespace, redis_namespace
from projections.task_list.changes import TOPICS, TaskChange, fold
from projections.task_list.model import STATUSES, TaskCounts
from projections.upstreams import TASKS

log = logging.getLogger(__name__)

NAME = "task_stats"
VERSION = 1

APPLY = """
local task = KEYS[1]
local ns, version, id = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local stored = redis.call('HMGET', task, 'v', 'o', 's', 'd', 'x')
if stored[1] and tonumber(stored[1]) >= version then return 0 end
local owner = stored[2] or ARGV[4]
if owner == '' then return -1 end  -- a change to a task whose creation never came: ignore
local status = ARGV[5] ~= '' and ARGV[5] or stored[3]
local due = ARGV[6] ~= '' and ARGV[6] or (stored[4] or '-')
local deleted = (ARGV[7] == '1' or stored[5] == '1') and '1' or '0'
local counts = ns .. 'user:' .. owner .. ':counts'
local dues = ns .. 'user:' .. owner .. ':due'
if stored[3] and stored[5] ~= '1' then
  redis.call('HINCRBY', counts, stored[3], -1)
  redis.call('ZREM', dues, id)
end
if deleted ~= '1' and status then
  redis.call('HINCRBY', counts, status, 1)
  if status ~= 'done' and due ~= '-' then redis.call('ZADD', dues, due, id) end
end
redis.call('HSET', task, 'v', version, 'o', owner, 's', status or '', 'd', due, 'x', deleted)
return 1
"""


def namespace(prefix: str, generation: int) -> str:
    return redis_namespace(prefix, NAME, generation)


def _due_arg(change: TaskChange) -> str:
    if "due_date" not in change.fields:
        return ""
    due: datetime | None = change.fields["due_date"]
    return "-" if due is None else repr(due.timestamp())


@dataclass
class TaskStatsProjector:
    redis: Redis
    ns: str
    name: str = NAME
    version: int = VERSION
    upstreams: Sequence[str] = (TASKS,)
    topics: Sequence[str] = TOPICS

    def __post_init__(self) -> None:
        self._script = self.redis.register_script(APPLY)

    async def start(self) -> None:
        return None

    async def apply(self, batch: Sequence[Envelope]) -> None:
        """One pipelined round trip per batch; the script makes each task's change idempotent."""
        changes = fold(batch)
        if not changes:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in changes:
                await self._script(
                    keys=[f"{self.ns}task:{c.task_id}"],
                    args=[
                        self.ns,
                        c.version,
                        str(c.task_id),
                        "" if c.owner_id is None else str(c.owner_id),
                        c.fields.get("status", ""),
                        _due_arg(c),
                        "1" if c.deleted else "0",
                    ],
                    client=pipe,
                )
            await pipe.execute()


@dataclass
class TaskStatsProjection:
    redis: Redis
    prefix: str
    name: str = NAME
    upstreams: Sequence[str] = (TASKS,)
    topics: Sequence[str] = TOPICS

    def __post_init__(self) -> None:
        self._checkpoints = RedisCheckpointStore(self.redis, self.prefix)

    @property
    def checkpoints(self) -> RedisCheckpointStore:
        """On the counters' Redis: if it loses recent writes, their checkpoint goes with them."""
        return self._checkpoints

    def projector(self, generation: int) -> TaskStatsProjector:
        return TaskStatsProjector(self.redis, namespace(self.prefix, generation))

    async def drop(self, generation: int) -> None:
        await drop_namespace(self.redis, namespace(self.prefix, generation))


class RedisTaskStats:
    """The query side: one pipelined round trip for the counters and the overdue count.

    Any Redis error answers None (the caller counts in MongoDB instead), and Redis is then left
    alone for ``pause`` seconds so a dead server costs no request a timeout.
    """

    def __init__(self, redis: Redis, prefix: str, pause: float = 1.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._pause = pause
        self._skip_until = 0.0
        self._checkpoints = RedisCheckpointStore(redis, prefix)

    async def checkpoint(self, generation: int, upstream: str) -> int | None:
        """How far the counters have applied ``upstream``; None when Redis does not answer."""
        if time.monotonic() < self._skip_until:
            return None
        try:
            return await self._checkpoints.position(NAME, generation, upstream)
        except RedisError as exc:
            self._skip_until = time.monotonic() + self._pause
            log.warning("task stats unavailable for %.1fs: %s", self._pause, exc)
            return None

    async def counts(self, generation: int, owner_id: UUID, now: datetime) -> TaskCounts | None:
        if time.monotonic() < self._skip_until:
            return None
        ns = namespace(self._prefix, generation)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hmget(f"{ns}user:{owner_id}:counts", list(STATUSES))
                pipe.zcount(f"{ns}user:{owner_id}:due", "-inf", f"({now.timestamp()!r}")
                counters, overdue = await pipe.execute()
        except RedisError as exc:
            self._skip_until = time.monotonic() + self._pause
            log.warning("task stats unavailable for %.1fs: %s", self._pause, exc)
            return None
        by_status = {s: int(v or 0) for s, v in zip(STATUSES, counters, strict=True)}
        return TaskCounts(**by_status, overdue=int(overdue))
