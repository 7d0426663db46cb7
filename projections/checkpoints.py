"""Where each projection generation stands in each upstream log: its checkpoints.

A checkpoint is the position up to which every event of an upstream has been applied (or
parked). It only ever moves forward, except when an in-place rebuild resets a generation.

A checkpoint lives in the same store as its read model: a Redis-only projection keeps it in
Redis (``RedisCheckpointStore``), written after the data it covers, so when Redis loses recent
writes (failover to a lagging replica) it loses the checkpoint with them and the events are
applied again. A projection says so by implementing ``OwnCheckpoints``; every other one uses
the document store's (``MongoCheckpointStore``).

A checkpoint is also bound to its log: with its position it records a ``LogMark``, the log's
first event and the event at that position. A runner checks the mark before it resumes (see
``projections.log.checkpoint_problem``): a checkpoint ahead of its log, taken on another log, or
on one that has since diverged (restored from an older backup, its positions reused) stops the
projection instead of skipping events for ever. Checkpoints stored before marks existed have
none; they are accepted and get one on their next advance.

Every reset bumps the generation's *epoch*. A writer ``claim``s its checkpoint (position and
epoch) when it starts and passes the epoch to ``advance``: a writer that started before a reset
is stale, and its late ``advance`` changes nothing (it gets ``False``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis

CHECKPOINTS = "projection_checkpoints"


def checkpoint_id(projection: str, generation: int, upstream: str) -> str:
    """The ``_id`` of a checkpoint document: a contract the query side reads directly."""
    return f"{projection}:{generation}:{upstream}"


@dataclass(frozen=True, slots=True)
class LogMark:
    """Which log a checkpoint follows and what it last applied there, each event named
    ``originator_id:version``: a position alone says nothing once a log is replaced or
    restored, since its new events reuse the positions."""

    log: str  # the log's first event: its identity
    event: str  # the event at the checkpoint's position


@dataclass(frozen=True, slots=True)
class Checkpoint:
    position: int
    epoch: int  # bumped by every reset of the generation
    mark: LogMark | None = None  # None at 0, and on checkpoints from before marks existed


class StaleCheckpointError(Exception):
    """An in-place rebuild reset the generation after this writer started: it must stop."""


class CheckpointStore(Protocol):
    async def position(self, projection: str, generation: int, upstream: str) -> int:
        """The checkpoint, 0 when the generation never advanced in that upstream."""
        ...

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        """Every upstream's checkpoint of a generation (those still at 0 may be left out)."""
        ...

    async def read(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        """The checkpoint as stored, mark included, without claiming it (status)."""
        ...

    async def claim(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        """Where a writer starts, with the epoch its ``advance`` calls must carry."""
        ...

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
        *,
        mark: LogMark | None = None,
    ) -> bool:
        """Record that everything up to ``position`` is applied; never moves a checkpoint back.

        ``mark`` is the log's identity and the event at ``position``; it is stored with the
        position (a position stored without one drops the old mark).
        With ``epoch``: False, and nothing changes, when a reset has bumped it since (a stale
        writer). Without: unfenced (tests, tools)."""
        ...

    async def reset(self, projection: str, generation: int) -> None:
        """Zero a generation's checkpoints and bump its epoch (in-place rebuild, dropped
        generation), fencing off every writer that claimed before."""
        ...


@runtime_checkable
class OwnCheckpoints(Protocol):
    """A projection whose checkpoints live beside its read model, not in the document store."""

    @property
    def checkpoints(self) -> CheckpointStore: ...


def checkpoints_of(projection: object, default: CheckpointStore) -> CheckpointStore:
    """The store that holds ``projection``'s checkpoints."""
    return projection.checkpoints if isinstance(projection, OwnCheckpoints) else default


class InMemoryCheckpointStore:
    def __init__(self) -> None:
        self._positions: dict[tuple[str, int, str], int] = {}
        self._marks: dict[tuple[str, int, str], LogMark] = {}
        self._epochs: dict[tuple[str, int], int] = {}

    async def position(self, projection: str, generation: int, upstream: str) -> int:
        return self._positions.get((projection, generation, upstream), 0)

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        return {
            upstream: position
            for (name, gen, upstream), position in self._positions.items()
            if (name, gen) == (projection, generation) and position > 0
        }

    async def read(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        return Checkpoint(
            await self.position(projection, generation, upstream),
            self._epochs.get((projection, generation), 0),
            self._marks.get((projection, generation, upstream)),
        )

    async def claim(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        return await self.read(projection, generation, upstream)

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
        *,
        mark: LogMark | None = None,
    ) -> bool:
        if epoch is not None and epoch != self._epochs.get((projection, generation), 0):
            return False
        key = (projection, generation, upstream)
        current = self._positions.get(key, 0)
        if position > current or (position == current and mark is not None):
            self._positions[key] = position
            if mark is None:
                self._marks.pop(key, None)
            else:
                self._marks[key] = mark
        return True

    async def reset(self, projection: str, generation: int) -> None:
        for key in [k for k in self._positions if k[:2] == (projection, generation)]:
            del self._positions[key]
            self._marks.pop(key, None)
        self._epochs[projection, generation] = self._epochs.get((projection, generation), 0) + 1


class MongoCheckpointStore:
    """One document per (projection, generation, upstream) in ``projection_checkpoints``.

    ``{_id: checkpoint_id(...), position, epoch, projection, generation, upstream,
    updated_at}``: the query side reads these documents directly (in its own sessions), so the
    ``_id`` spelling and ``position`` are a contract. The position is written after the
    projector's writes have returned, so a reader that sees it sees them.

    ``claim`` creates the document, so a reset (which zeroes it and bumps its ``epoch``) always
    has something to fence with; a stale ``advance`` filters on its old epoch and matches
    nothing, and never upserts.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._collection: AsyncCollection[dict[str, Any]] = db[CHECKPOINTS]

    async def position(self, projection: str, generation: int, upstream: str) -> int:
        doc = await self._collection.find_one(
            {"_id": checkpoint_id(projection, generation, upstream)}, {"position": 1}
        )
        return 0 if doc is None else int(doc["position"])

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        cursor = self._collection.find(
            {"projection": projection, "generation": generation, "position": {"$gt": 0}}
        )
        return {doc["upstream"]: int(doc["position"]) async for doc in cursor}

    def _fields(self, projection: str, generation: int, upstream: str) -> dict[str, Any]:
        return {
            "projection": projection,
            "generation": generation,
            "upstream": upstream,
            "updated_at": datetime.now(UTC),
        }

    async def read(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        doc = await self._collection.find_one(
            {"_id": checkpoint_id(projection, generation, upstream)}
        )
        return Checkpoint(0, 0) if doc is None else _checkpoint(doc)

    async def claim(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        doc = await self._collection.find_one_and_update(
            {"_id": checkpoint_id(projection, generation, upstream)},
            {
                "$setOnInsert": {"position": 0, "epoch": 0},
                "$set": self._fields(projection, generation, upstream),
            },
            upsert=True,
            return_document=True,
        )
        assert doc is not None  # upsert with return_document=AFTER
        return _checkpoint(doc)

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
        *,
        mark: LogMark | None = None,
    ) -> bool:
        # Only a higher position is written (a mark may re-stamp an equal one): a slower second
        # writer (a rebuild and the service both tailing a generation) can never move the
        # checkpoint back over events only the faster one applied, nor pair its mark with
        # another position.
        update: dict[str, Any] = {
            "$set": {"position": position, **self._fields(projection, generation, upstream)}
        }
        if mark is None:
            update["$unset"] = {"log": "", "event": ""}
        else:
            update["$set"] |= {"log": mark.log, "event": mark.event}
        behind = {"$lte" if mark is not None else "$lt": position}
        key = checkpoint_id(projection, generation, upstream)
        if epoch is None:
            with contextlib.suppress(DuplicateKeyError):  # it exists, at or past ``position``
                await self._collection.update_one(
                    {"_id": key, "position": behind}, update, upsert=True
                )
            return True
        # Documents written before epochs existed have none: they are at epoch 0.
        fence: Any = epoch if epoch else {"$in": [0, None]}
        result = await self._collection.update_one(
            {"_id": key, "epoch": fence, "position": behind}, update
        )
        if result.matched_count == 1:
            return True
        # Not written: already at or past ``position`` (fine), or fenced off by a reset.
        return await self._collection.count_documents({"_id": key, "epoch": fence}, limit=1) == 1

    async def reset(self, projection: str, generation: int) -> None:
        # Zeroed, not deleted: a deleted document would let a stale writer's upsert back in.
        await self._collection.update_many(
            {"projection": projection, "generation": generation},
            {
                "$set": {"position": 0, "updated_at": datetime.now(UTC)},
                "$unset": {"log": "", "event": ""},
                "$inc": {"epoch": 1},
            },
        )


def _checkpoint(doc: dict[str, Any]) -> Checkpoint:
    mark = LogMark(doc["log"], doc["event"]) if "log" in doc and "event" in doc else None
    return Checkpoint(int(doc["position"]), int(doc.get("epoch", 0)), mark)


# Raise a position, with its mark, unless the generation's epoch moved on (ARGV: upstream,
# position, epoch, mark; epoch -1 = unfenced, mark '' = none). A mark may re-stamp an equal
# position (a checkpoint from before marks gets one).
ADVANCE = """
local epoch = tonumber(ARGV[3])
if epoch >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') ~= epoch then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local position = tonumber(ARGV[2])
if current < position or (current == position and ARGV[4] ~= '') then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if ARGV[4] == '' then
    redis.call('HDEL', KEYS[3], ARGV[1])
  else
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
  end
end
return 1
"""

RESET = """
redis.call('DEL', KEYS[1], KEYS[3])
return redis.call('INCR', KEYS[2])
"""


class RedisCheckpointStore:
    """Checkpoints of Redis-only projections, on the Redis their data lives on.

    Generation N of a projection: hash ``{prefix}checkpoints:{projection}:{N}``
    ``{upstream: position}``, its epoch in ``…:{N}:epoch`` and the marks in hash ``…:{N}:marks``
    ``{upstream: "log event"}``, all outside the generation's
    data namespace (a drop of the data must not lower the epoch). Written after the data they
    cover, on the same server, so replication (ordered) never carries the checkpoint without
    the data before it.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._advance = redis.register_script(ADVANCE)
        self._reset = redis.register_script(RESET)

    def _keys(self, projection: str, generation: int) -> list[str]:
        key = f"{self._prefix}checkpoints:{projection}:{generation}"
        return [key, key + ":epoch", key + ":marks"]

    async def position(self, projection: str, generation: int, upstream: str) -> int:
        value = await self._redis.hget(self._keys(projection, generation)[0], upstream)
        return int(value or 0)

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        stored = await self._redis.hgetall(self._keys(projection, generation)[0])
        return {
            (k.decode() if isinstance(k, bytes) else k): int(v)
            for k, v in stored.items()
            if int(v) > 0
        }

    async def read(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        positions, epochs, marks = self._keys(projection, generation)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(positions, upstream)
            pipe.get(epochs)
            pipe.hget(marks, upstream)
            position, epoch, mark = await pipe.execute()
        if isinstance(mark, bytes):
            mark = mark.decode()
        log, _, event = (mark or "").partition(" ")
        return Checkpoint(
            int(position or 0), int(epoch or 0), LogMark(log, event) if event else None
        )

    async def claim(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        return await self.read(projection, generation, upstream)

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
        *,
        mark: LogMark | None = None,
    ) -> bool:
        done = await self._advance(
            keys=self._keys(projection, generation),
            args=[
                upstream,
                position,
                -1 if epoch is None else epoch,
                "" if mark is None else f"{mark.log} {mark.event}",
            ],
        )
        return bool(done)

    async def reset(self, projection: str, generation: int) -> None:
        await self._reset(keys=self._keys(projection, generation))


class CheckpointsByProjection:
    """One CheckpointStore over several: each projection's own (``OwnCheckpoints``) once it
    is ``add``-ed, the document store's for every other. For tools that hold only names
    (``projections status``)."""

    def __init__(self, default: CheckpointStore) -> None:
        self._default = default
        self._own: dict[str, CheckpointStore] = {}

    def add(self, projection: object, name: str) -> None:
        store = checkpoints_of(projection, self._default)
        if store is not self._default:
            self._own[name] = store

    def _of(self, projection: str) -> CheckpointStore:
        return self._own.get(projection, self._default)

    async def position(self, projection: str, generation: int, upstream: str) -> int:
        return await self._of(projection).position(projection, generation, upstream)

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        return await self._of(projection).positions(projection, generation)

    async def read(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        return await self._of(projection).read(projection, generation, upstream)

    async def claim(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        return await self._of(projection).claim(projection, generation, upstream)

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
        *,
        mark: LogMark | None = None,
    ) -> bool:
        store = self._of(projection)
        return await store.advance(projection, generation, upstream, position, epoch, mark=mark)

    async def reset(self, projection: str, generation: int) -> None:
        await self._of(projection).reset(projection, generation)
