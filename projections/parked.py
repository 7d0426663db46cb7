"""Poison events: those a projector cannot apply, set aside with their error so the rest flows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

PARKED = "projection_parked"


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    projection: str
    generation: int
    upstream: str
    position: int
    topic: str
    error: str
    time: datetime


class ParkedEvents(Protocol):
    async def park(self, event: ParkedEvent) -> None:
        """Set an event aside; parking the same position again only refreshes the error."""
        ...

    async def count(self, projection: str, generation: int | None = None) -> int:
        """Parked events of a projection (of one generation, or of all)."""
        ...

    async def list(self, projection: str, generation: int) -> list[ParkedEvent]:
        """A generation's parked events, in log order per upstream."""
        ...

    async def forget(self, projection: str, generation: int) -> None:
        """Remove a generation's parked events (it was dropped, or is rebuilt in place)."""
        ...


def _key(event: ParkedEvent) -> tuple[str, int, str, int]:
    return (event.projection, event.generation, event.upstream, event.position)


class InMemoryParkedEvents:
    def __init__(self) -> None:
        self._events: dict[tuple[str, int, str, int], ParkedEvent] = {}

    async def park(self, event: ParkedEvent) -> None:
        self._events[_key(event)] = event

    async def count(self, projection: str, generation: int | None = None) -> int:
        return sum(
            1
            for e in self._events.values()
            if e.projection == projection and generation in (None, e.generation)
        )

    async def list(self, projection: str, generation: int) -> list[ParkedEvent]:
        return [
            self._events[key] for key in sorted(self._events) if key[:2] == (projection, generation)
        ]

    async def forget(self, projection: str, generation: int) -> None:
        for key in [k for k in self._events if k[:2] == (projection, generation)]:
            del self._events[key]


class MongoParkedEvents:
    """``projection_parked``: a document per parked (projection, generation, upstream, position)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._collection: AsyncCollection[dict[str, Any]] = db[PARKED]

    async def park(self, event: ParkedEvent) -> None:
        doc = {
            "projection": event.projection,
            "generation": event.generation,
            "upstream": event.upstream,
            "position": event.position,
            "topic": event.topic,
            "error": event.error,
            "time": event.time,
        }
        _id = f"{event.projection}:{event.generation}:{event.upstream}:{event.position}"
        await self._collection.replace_one({"_id": _id}, doc, upsert=True)

    async def count(self, projection: str, generation: int | None = None) -> int:
        query: dict[str, Any] = {"projection": projection}
        if generation is not None:
            query["generation"] = generation
        return await self._collection.count_documents(query)

    async def list(self, projection: str, generation: int) -> list[ParkedEvent]:
        cursor = self._collection.find({"projection": projection, "generation": generation})
        events = [
            ParkedEvent(
                projection=doc["projection"],
                generation=doc["generation"],
                upstream=doc["upstream"],
                position=doc["position"],
                topic=doc["topic"],
                error=doc["error"],
                time=doc["time"],
            )
            async for doc in cursor
        ]
        return sorted(events, key=_key)

    async def forget(self, projection: str, generation: int) -> None:
        await self._collection.delete_many({"projection": projection, "generation": generation})
