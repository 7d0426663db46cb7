"""Which generation of each projection is live, which is being built, which is on its way out.

One document per projection in ``projection_aliases``::

    {_id: name, generation: N, version: V, state: "live" | "paused",
     building: M | None, highest: H, epoch: E, retiring: [{generation, drop_after}], …}

- ``generation`` is what the query side reads (through ``LiveGenerations``); switching it is a
  single ``update_one``, so a reader sees N or N+1, never nothing.
- ``building`` is the generation a blue/green rebuild is filling; only the rebuilding process
  tails it (a crashed rebuild resumes it from its checkpoints).
- ``retiring`` lists replaced generations kept, and still tailed by the projector service,
  until ``drop_after``: longer than any reader's cached alias (``ALIAS_CACHE_TTL``).
- ``state: paused`` means an in-place rebuild owns the live generation: the service stops
  tailing it and reports so in ``projection_workers`` (its heartbeat, with the ``epoch`` it
  has seen), which is how the rebuild knows nobody else writes while it drops and refills.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

ALIASES = "projection_aliases"
WORKERS = "projection_workers"
# How long the query side trusts its cached alias; retired generations outlive it.
ALIAS_CACHE_TTL = 1.0


class AliasState(StrEnum):
    LIVE = "live"
    PAUSED = "paused"


class AliasConflictError(Exception):
    """The alias is not in the state the operation needs (e.g. an in-place rebuild is running)."""


@dataclass(frozen=True, slots=True)
class Retiring:
    generation: int
    drop_after: datetime


@dataclass(frozen=True, slots=True)
class Alias:
    name: str
    generation: int
    version: int
    state: AliasState = AliasState.LIVE
    building: int | None = None
    building_version: int | None = None
    highest: int = 1
    epoch: int = 0
    retiring: tuple[Retiring, ...] = ()

    def tailed(self, now: datetime) -> tuple[int, ...]:
        """The generations the projector service keeps current: live unless paused, and retiring."""
        live = () if self.state is AliasState.PAUSED else (self.generation,)
        return live + tuple(r.generation for r in self.retiring if r.drop_after > now)


@dataclass(frozen=True, slots=True)
class Worker:
    """A projector process as its last heartbeat described it."""

    id: str
    seen: datetime
    epochs: dict[str, int] = field(default_factory=dict)  # alias epoch seen, per projection
    tailing: tuple[str, ...] = ()  # "name:generation"


class AliasRegistry(Protocol):
    async def get(self, name: str) -> Alias | None: ...

    async def ensure(self, name: str, version: int) -> Alias:
        """The alias, created on first use with generation 1 live."""
        ...

    async def begin_rebuild(self, name: str, version: int) -> Alias:
        """Allocate the next generation as ``building``; an unfinished rebuild is resumed."""
        ...

    async def switch(self, name: str, *, to: int, drop_after: datetime) -> Alias:
        """Make the built generation live in one write; the old one retires until ``drop_after``."""
        ...

    async def retired(self, name: str, generation: int) -> None:
        """Forget a retiring generation once it is dropped."""
        ...

    async def pause(self, name: str) -> Alias:
        """Hand the live generation to an in-place rebuild (bumps ``epoch``)."""
        ...

    async def resume(self, name: str, version: int) -> Alias:
        """Give the live generation back to the projector service."""
        ...

    async def heartbeat(
        self, worker: str, epochs: Mapping[str, int], tailing: Sequence[str]
    ) -> None: ...

    async def workers(self, since: datetime) -> list[Worker]:
        """Workers whose last heartbeat is at or after ``since``."""
        ...

    async def leave(self, worker: str) -> None: ...


def _next_state(alias: Alias, **changes: Any) -> Alias:
    values = {f: getattr(alias, f) for f in Alias.__dataclass_fields__}
    values.update(changes)
    return Alias(**values)


class InMemoryAliasRegistry:
    def __init__(self) -> None:
        self._aliases: dict[str, Alias] = {}
        self._workers: dict[str, Worker] = {}

    async def get(self, name: str) -> Alias | None:
        return self._aliases.get(name)

    async def ensure(self, name: str, version: int) -> Alias:
        return self._aliases.setdefault(name, Alias(name=name, generation=1, version=version))

    async def begin_rebuild(self, name: str, version: int) -> Alias:
        alias = await self.ensure(name, version)
        if alias.state is AliasState.PAUSED:
            raise AliasConflictError(f"{name}: an in-place rebuild is running or was interrupted")
        if alias.building is not None:
            return alias
        nxt = alias.highest + 1
        alias = _next_state(alias, building=nxt, building_version=version, highest=nxt)
        self._aliases[name] = alias
        return alias

    async def switch(self, name: str, *, to: int, drop_after: datetime) -> Alias:
        alias = self._aliases.get(name)
        if alias is None or alias.building != to:
            raise AliasConflictError(f"{name}: generation {to} is not being built")
        alias = _next_state(
            alias,
            generation=to,
            version=alias.building_version or alias.version,
            building=None,
            building_version=None,
            retiring=(*alias.retiring, Retiring(alias.generation, drop_after)),
        )
        self._aliases[name] = alias
        return alias

    async def retired(self, name: str, generation: int) -> None:
        alias = self._aliases[name]
        retiring = tuple(r for r in alias.retiring if r.generation != generation)
        self._aliases[name] = _next_state(alias, retiring=retiring)

    async def pause(self, name: str) -> Alias:
        alias = self._aliases.get(name)
        if alias is None:
            raise AliasConflictError(f"{name}: no alias yet, nothing to rebuild in place")
        if alias.building is not None:
            raise AliasConflictError(
                f"{name}: a blue/green rebuild of generation {alias.building} "
                "is unfinished; finish it first"
            )
        alias = _next_state(alias, state=AliasState.PAUSED, epoch=alias.epoch + 1)
        self._aliases[name] = alias
        return alias

    async def resume(self, name: str, version: int) -> Alias:
        alias = _next_state(self._aliases[name], state=AliasState.LIVE, version=version)
        self._aliases[name] = alias
        return alias

    async def heartbeat(
        self, worker: str, epochs: Mapping[str, int], tailing: Sequence[str]
    ) -> None:
        self._workers[worker] = Worker(worker, datetime.now(UTC), dict(epochs), tuple(tailing))

    async def workers(self, since: datetime) -> list[Worker]:
        return [w for w in self._workers.values() if w.seen >= since]

    async def leave(self, worker: str) -> None:
        self._workers.pop(worker, None)


def _alias(doc: Mapping[str, Any]) -> Alias:
    return Alias(
        name=doc["_id"],
        generation=int(doc["generation"]),
        version=int(doc["version"]),
        state=AliasState(doc.get("state", AliasState.LIVE)),
        building=doc.get("building"),
        building_version=doc.get("building_version"),
        highest=int(doc.get("highest", doc["generation"])),
        epoch=int(doc.get("epoch", 0)),
        retiring=tuple(
            Retiring(int(r["generation"]), _utc(r["drop_after"])) for r in doc.get("retiring", [])
        ),
    )


def _utc(moment: datetime) -> datetime:
    # A client without tz_aware=True hands back naive UTC datetimes.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class MongoAliasRegistry:
    """``projection_aliases`` and ``projection_workers``; a transition is one conditional write."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._aliases: AsyncCollection[dict[str, Any]] = db[ALIASES]
        self._workers: AsyncCollection[dict[str, Any]] = db[WORKERS]

    async def get(self, name: str) -> Alias | None:
        doc = await self._aliases.find_one({"_id": name})
        return None if doc is None else _alias(doc)

    async def ensure(self, name: str, version: int) -> Alias:
        doc = await self._aliases.find_one_and_update(
            {"_id": name},
            {
                "$setOnInsert": {
                    "generation": 1,
                    "version": version,
                    "state": str(AliasState.LIVE),
                    "building": None,
                    "building_version": None,
                    "highest": 1,
                    "epoch": 0,
                    "retiring": [],
                    "updated_at": datetime.now(UTC),
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # upsert=True with AFTER always returns the document
        return _alias(doc)

    async def _update(self, name: str, expected: Alias, update: Mapping[str, Any]) -> Alias | None:
        """Apply ``update`` only if nobody changed the alias since ``expected`` was read."""
        doc = await self._aliases.find_one_and_update(
            {
                "_id": name,
                "generation": expected.generation,
                "building": expected.building,
                "highest": expected.highest,
                "epoch": expected.epoch,
                "state": str(expected.state),
            },
            {**update, "$currentDate": {"updated_at": True}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _alias(doc)

    async def begin_rebuild(self, name: str, version: int) -> Alias:
        while True:
            alias = await self.ensure(name, version)
            if alias.state is AliasState.PAUSED:
                raise AliasConflictError(
                    f"{name}: an in-place rebuild is running or was interrupted"
                )
            if alias.building is not None:
                return alias
            nxt = alias.highest + 1
            updated = await self._update(
                name,
                alias,
                {"$set": {"building": nxt, "building_version": version, "highest": nxt}},
            )
            if updated is not None:
                return updated

    async def switch(self, name: str, *, to: int, drop_after: datetime) -> Alias:
        alias = await self.get(name)
        if alias is None or alias.building != to:
            raise AliasConflictError(f"{name}: generation {to} is not being built")
        updated = await self._update(
            name,
            alias,
            {
                "$set": {
                    "generation": to,
                    "version": alias.building_version or alias.version,
                    "building": None,
                    "building_version": None,
                },
                "$push": {"retiring": {"generation": alias.generation, "drop_after": drop_after}},
            },
        )
        if updated is None:
            raise AliasConflictError(
                f"{name}: the alias changed while switching to generation {to}"
            )
        return updated

    async def retired(self, name: str, generation: int) -> None:
        await self._aliases.update_one(
            {"_id": name}, {"$pull": {"retiring": {"generation": generation}}}
        )

    async def pause(self, name: str) -> Alias:
        doc = await self._aliases.find_one_and_update(
            {"_id": name, "building": None},
            {
                "$set": {"state": str(AliasState.PAUSED)},
                "$inc": {"epoch": 1},
                "$currentDate": {"updated_at": True},
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return _alias(doc)
        alias = await self.get(name)
        if alias is None:
            raise AliasConflictError(f"{name}: no alias yet, nothing to rebuild in place")
        raise AliasConflictError(
            f"{name}: a blue/green rebuild of generation {alias.building} "
            "is unfinished; finish it first"
        )

    async def resume(self, name: str, version: int) -> Alias:
        doc = await self._aliases.find_one_and_update(
            {"_id": name},
            {
                "$set": {"state": str(AliasState.LIVE), "version": version},
                "$currentDate": {"updated_at": True},
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise AliasConflictError(f"{name}: no alias")
        return _alias(doc)

    async def heartbeat(
        self, worker: str, epochs: Mapping[str, int], tailing: Sequence[str]
    ) -> None:
        await self._workers.replace_one(
            {"_id": worker},
            {"seen": datetime.now(UTC), "epochs": dict(epochs), "tailing": list(tailing)},
            upsert=True,
        )

    async def workers(self, since: datetime) -> list[Worker]:
        return [
            Worker(doc["_id"], _utc(doc["seen"]), dict(doc["epochs"]), tuple(doc["tailing"]))
            async for doc in self._workers.find({"seen": {"$gte": since}})
        ]

    async def leave(self, worker: str) -> None:
        await self._workers.delete_one({"_id": worker})


class LiveGenerations:
    """The generation the query side should read, per projection, cached for ``ttl`` seconds.

    Before the projector ever ran there is no alias: generation 1 (empty) is the answer.
    """

    def __init__(self, aliases: AliasRegistry, ttl: float = ALIAS_CACHE_TTL) -> None:
        if ttl > ALIAS_CACHE_TTL:
            # Retired generations are dropped ALIAS_CACHE_TTL-based grace after a switch.
            raise ValueError(f"ttl must be at most {ALIAS_CACHE_TTL}s")
        self._aliases = aliases
        self._ttl = ttl
        self._cache: dict[str, tuple[int, float]] = {}

    async def of(self, name: str) -> int:
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached[1] > now:
            return cached[0]
        alias = await self._aliases.get(name)
        generation = 1 if alias is None else alias.generation
        self._cache[name] = (generation, now + self._ttl)
        return generation
