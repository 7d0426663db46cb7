"""Rebuilds on MongoDB while the projector service runs and a client keeps reading."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from domain.meta import SYSTEM
from projections.aliases import AliasState, LiveGenerations, MongoAliasRegistry
from projections.checkpoints import MongoCheckpointStore
from projections.host import ProjectionHost
from projections.log import watch
from projections.parked import MongoParkedEvents
from projections.rebuild import Rebuild
from projections.runner import Pacing
from tests.fixtures.projections import Stores, TitlesProjection, eventually, write_history

TASKS = 30
REFRESH = 0.1


@dataclass
class Service:
    stores: Stores
    db: AsyncDatabase[dict[str, Any]]
    projection: TitlesProjection
    host: ProjectionHost
    checkpoints: MongoCheckpointStore
    parked: MongoParkedEvents
    aliases: MongoAliasRegistry

    def rebuild(self) -> Rebuild:
        return Rebuild(
            self.stores.logs,
            self.checkpoints,
            self.parked,
            self.aliases,
            pacing=Pacing(batch_size=7),
            grace=2,
            host_refresh=REFRESH,
        )

    async def count(self, generation: int) -> int:
        return await self.db[f"titles_v{generation}_tasks"].count_documents({})

    def add_task(self, title: str) -> None:
        owner = self.stores.write.identity.find_by_email("owner@example.com")
        assert owner is not None
        self.stores.write.tasks.create_task(owner_id=owner.id, title=title, meta=SYSTEM)


@pytest.fixture
async def service(
    stores: Stores, mongo_db: AsyncDatabase[dict[str, Any]]
) -> AsyncIterator[Service]:
    """The projector service over this test's stores, already caught up."""
    write_history(stores.write, tasks=TASKS)
    projection = TitlesProjection(mongo_db)
    checkpoints = MongoCheckpointStore(mongo_db)
    parked = MongoParkedEvents(mongo_db)
    aliases = MongoAliasRegistry(mongo_db)
    host = ProjectionHost([projection], stores.logs, checkpoints, parked, aliases, refresh=REFRESH)
    running = Service(stores, mongo_db, projection, host, checkpoints, parked, aliases)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(host.run(stop)),
        asyncio.create_task(watch(list(stores.logs.values()))),
    ]

    async def caught_up() -> bool:
        # Every log to its head, not just some tasks: tests compare against this state.
        positions = await checkpoints.positions("titles", 1)
        return all(positions.get(name, 0) >= log.head() for name, log in stores.logs.items())

    await eventually(caught_up, within=30)
    await eventually(lambda: _equals(running.count(1), TASKS))
    yield running
    stop.set()
    await tasks[0]
    tasks[1].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await tasks[1]


async def _equals(count: Any, expected: int) -> bool:
    return bool(await count == expected)


async def test_blue_green_rebuild_never_shows_a_reader_an_empty_model(service: Service) -> None:
    live = LiveGenerations(service.aliases)
    reads: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def read_in_a_loop() -> None:
        while not done.is_set():
            generation = await live.of("titles")
            reads.append((generation, await service.count(generation)))
            await asyncio.sleep(0.005)

    async def write_meanwhile() -> None:
        for i in range(5):
            await asyncio.to_thread(service.add_task, f"during {i}")
            await asyncio.sleep(0.05)

    reader = asyncio.create_task(read_in_a_loop())
    writer = asyncio.create_task(write_meanwhile())
    rebuilt = await service.rebuild().blue_green(service.projection)
    await writer
    await eventually(lambda: _equals(service.count(2), TASKS + 5))
    await asyncio.sleep(0.2)
    done.set()
    await reader

    assert (rebuilt.generation, rebuilt.replaced, rebuilt.parked) == (2, 1, 0)
    assert {generation for generation, _ in reads} == {1, 2}
    assert min(count for _, count in reads) >= TASKS
    assert reads[-1] == (2, TASKS + 5)
    assert "titles_v1_tasks" not in await service.db.list_collection_names()
    assert await service.checkpoints.positions("titles", 1) == {}
    await eventually(lambda: service.host.tailing() == [("titles", 2)])


async def test_an_interrupted_blue_green_rebuild_resumes(service: Service) -> None:
    await service.aliases.begin_rebuild("titles", 1)
    await service.checkpoints.advance("titles", 2, "Tasks", 3)  # it got this far, then died
    rebuilt = await service.rebuild().blue_green(service.projection)
    assert (rebuilt.generation, rebuilt.resumed) == (2, True)
    assert await service.count(2) == TASKS


async def test_in_place_rebuild_refills_the_live_generation(service: Service) -> None:
    before = await service.projection.snapshot(1)
    rebuilt = await service.rebuild().in_place(service.projection)
    assert (rebuilt.generation, rebuilt.replaced) == (1, None)
    assert await service.projection.snapshot(1) == before
    alias = await service.aliases.get("titles")
    assert alias is not None
    assert (alias.state, alias.generation, alias.epoch) == (AliasState.LIVE, 1, 1)
    await eventually(lambda: service.host.tailing() == [("titles", 1)])
    await asyncio.to_thread(service.add_task, "after")
    await eventually(lambda: _equals(service.count(1), TASKS + 1))
