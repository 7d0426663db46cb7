"""Where each projection generation stands in each upstream log: its checkpoints.

A checkpoint is the position up to which every event of an upstream has been applied (or
parked). It only ever moves forward, except when an in-place rebuild resets a generation.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

CHECKPOINTS = "projection_checkpoints"


class CheckpointStore(Protocol):
    async def position(self, projection: str, generation: int, upstream: str) -> int:
        """The checkpoint, 0 when the generation never advanced in that upstream."""
        ...

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        """Every upstream's checkpoint of a generation."""
        ...

    async def advance(self, projection: str, generation: int, upstream: str, position: int) -> None:
        """Record that everything up to ``position`` is applied; never moves a checkpoint back."""
        ...

    async def reset(self, projection: str, generation: int) -> None:
        """Forget a generation's checkpoints (in-place rebuild, dropped generation)."""
        ...


class InMemoryCheckpointStore:
    def __init__(self) -> None:
        self._positions: dict[tuple[str, int, str], int] = {}

    async def position(self, projection: str, generation: int, upstream: str) -> int:
        return self._positions.get((projection, generation, upstream), 0)

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        return {
            upstream: position
            for (name, gen, upstream), position in self._positions.items()
            if (name, gen) == (projection, generation)
        }

    async def advance(self, projection: str, generation: int, upstream: str, position: int) -> None:
        key = (projection, generation, upstream)
        self._positions[key] = max(self._positions.get(key, 0), position)

    async def reset(self, projection: str, generation: int) -> None:
        for key in [k for k in self._positions if k[:2] == (projection, generation)]:
            del self._positions[key]


class MongoCheckpointStore:
    """One document per (projection, generation, upstream) in ``projection_checkpoints``.

    ``{_id: "<projection>:<generation>:<upstream>", position, projection, generation, upstream,
    updated_at}``: the query side reads these documents directly (in its own sessions), so the
    ``_id`` spelling and ``position`` are a contract. The position is written after the
    projector's writes have returned, so a reader that sees it sees them.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._collection: AsyncCollection[dict[str, Any]] = db[CHECKPOINTS]

    @staticmethod
    def _id(projection: str, generation: int, upstream: str) -> str:
        return f"{projection}:{generation}:{upstream}"

    async def position(self, projection: str, generation: int, upstream: str) -> int:
        doc = await self._collection.find_one(
            {"_id": self._id(projection, generation, upstream)}, {"position": 1}
        )
        return 0 if doc is None else int(doc["position"])

    async def positions(self, projection: str, generation: int) -> dict[str, int]:
        cursor = self._collection.find({"projection": projection, "generation": generation})
        return {doc["upstream"]: int(doc["position"]) async for doc in cursor}

    async def advance(self, projection: str, generation: int, upstream: str, position: int) -> None:
        # $max: a slower second writer (a rebuild and the service both tailing a generation)
        # can never move the checkpoint back over events only the faster one applied.
        await self._collection.update_one(
            {"_id": self._id(projection, generation, upstream)},
            {
                "$max": {"position": position},
                "$set": {
                    "projection": projection,
                    "generation": generation,
                    "upstream": upstream,
                    "updated_at": datetime.now(UTC),
                },
            },
            upsert=True,
        )

    async def reset(self, projection: str, generation: int) -> None:
        await self._collection.delete_many({"projection": projection, "generation": generation})


async def wait_for_position(
    checkpoints: CheckpointStore,
    projection: str,
    generation: int,
    upstream: str,
    position: int,
    *,
    within: float,
    interval: float = 0.005,
) -> bool:
    """Wait at most ``within`` seconds for a checkpoint to reach ``position`` (read-your-writes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await checkpoints.position(projection, generation, upstream) >= position:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
