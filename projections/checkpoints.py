"""Where each projection generation stands in each upstream log: its checkpoints.

A checkpoint is the position up to which every event of an upstream has been applied (or
parked). It only ever moves forward, except when an in-place rebuild resets a generation.

A checkpoint lives in the same store as its read model: a Redis-only projection keeps it in
Redis (``RedisCheckpointStore``), written after the data it covers, so when Redis loses recent
writes (failover to a lagging replica) it loses the checkpoint with them and the events are
applied again. A projection says so by implementing ``OwnCheckpoints``; every other one uses
the document store's (``MongoCheckpointStore``).

Every reset bumps the generation's *epoch*. A writer ``claim``s its checkpoint (position and
epoch) when it starts and passes the epoch to ``advance``: a writer that started before a reset
is stale, and its late ``advance`` changes nothing (it gets ``False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

CHECKPOINTS = "projection_checkpoints"


def checkpoint_id(projection: str, generation: int, upstream: str) -> str:
    """The ``_id`` of a checkpoint document: a contract the query side reads directly."""
    return f"{projection}:{generation}:{upstream}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    position: int
    epoch: int  # bumped by every reset of the generation


class StaleCheckpointError(Exception):
    """An in-place rebuild reset the generation after this writer started: it must stop."""


class CheckpointStore(Protocol):
    async def position(self, projection: str, generation: int, upstream: str) -> int:
        """The checkpoint, 0 when the generation never advanced in that upstream."""
        ...

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        """Every upstream's checkpoint of a generation (those still at 0 may be left out)."""
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
    ) -> bool:
        """Record that everything up to ``position`` is applied; never moves a checkpoint back.

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
        self._epochs: dict[tuple[str, int], int] = {}

    async def position(self, projection: str, generation: int, upstream: str) -> int:
        return self._positions.get((projection, generation, upstream), 0)

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        return {
            upstream: position
            for (name, gen, upstream), position in self._positions.items()
            if (name, gen) == (projection, generation) and position > 0
        }

    async def claim(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        return Checkpoint(
            await self.position(projection, generation, upstream),
            self._epochs.get((projection, generation), 0),
        )

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
    ) -> bool:
        if epoch is not None and epoch != self._epochs.get((projection, generation), 0):
            return False
        key = (projection, generation, upstream)
        self._positions[key] = max(self._positions.get(key, 0), position)
        return True

    async def reset(self, projection: str, generation: int) -> None:
        for key in [k for k in self._positions if k[:2] == (projection, generation)]:
            del self._positions[key]
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
        return Checkpoint(int(doc["position"]), int(doc.get("epoch", 0)))

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
    ) -> bool:
        # $max: a slower second writer (a rebuild and the service both tailing a generation)
        # can never move the checkpoint back over events only the faster one applied.
        update = {
            "$max": {"position": position},
            "$set": self._fields(projection, generation, upstream),
        }
        key = checkpoint_id(projection, generation, upstream)
        if epoch is None:
            await self._collection.update_one({"_id": key}, update, upsert=True)
            return True
        # Documents written before epochs existed have none: they are at epoch 0.
        fence: Any = epoch if epoch else {"$in": [0, None]}
        result = await self._collection.update_one({"_id": key, "epoch": fence}, update)
        return result.matched_count == 1

    async def reset(self, projection: str, generation: int) -> None:
        # Zeroed, not deleted: a deleted document would let a stale writer's upsert back in.
        await self._collection.update_many(
            {"projection": projection, "generation": generation},
            {"$set": {"position": 0, "updated_at": datetime.now(UTC)}, "$inc": {"epoch": 1}},
        )


# Raise a position unless the generation's epoch moved on (ARGV: upstream, position, epoch;
# epoch -1 = unfenced).
ADVANCE = """
local epoch = tonumber(ARGV[3])
if epoch >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') ~= epoch then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if current < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""

RESET = """
redis.call('DEL', KEYS[1])
return redis.call('INCR', KEYS[2])
"""


class RedisCheckpointStore:
    """Checkpoints of Redis-only projections, on the Redis their data lives on.

    Generation N of a projection: hash ``{prefix}checkpoints:{projection}:{N}``
    ``{upstream: position}`` and its epoch in ``…:{N}:epoch``, both outside the generation's
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
        return [key, key + ":epoch"]

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

    async def claim(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        positions, epochs = self._keys(projection, generation)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(positions, upstream)
            pipe.get(epochs)
            position, epoch = await pipe.execute()
        return Checkpoint(int(position or 0), int(epoch or 0))

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
    ) -> bool:
        done = await self._advance(
            keys=self._keys(projection, generation),
            args=[upstream, position, -1 if epoch is None else epoch],
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

    async def claim(self, projection: str, generation: int, upstream: str) -> Checkpoint:
        return await self._of(projection).claim(projection, generation, upstream)

    async def advance(
        self,
        projection: str,
        generation: int,
        upstream: str,
        position: int,
        epoch: int | None = None,
    ) -> bool:
        store = self._of(projection)
        return await store.advance(projection, generation, upstream, position, epoch)

    async def reset(self, projection: str, generation: int) -> None:
        await self._of(projection).reset(projection, generation)
