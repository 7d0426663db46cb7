"""TaskQueries on in-memory adapters: read-your-writes waits, the cache rule, the fallbacks."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from uuid import UUID

import pytest

from domain.errors import TaskNotFound
from projections.checkpoints import InMemoryCheckpointStore
from projections.task_list.memory import InMemoryPageCache, InMemoryTaskReadModel
from projections.task_list.model import TaskPage, TaskQuery
from projections.task_list.projection import TaskListProjection
from projections.task_stats.memory import InMemoryTaskStats
from projections.write_positions import InMemoryWritePositions
from queries.tasks.reads import TaskQueries
from tests.fixtures.read_side import EPOCH, TaskHistory

ALICE = UUID(int=1)


class FixedGenerations:
    async def of(self, name: str) -> int:
        return 1


class World:
    def __init__(self, timeout: float = 1.0) -> None:
        self.read_model = InMemoryTaskReadModel()
        self.cache = InMemoryPageCache()
        self.stats = InMemoryTaskStats()
        self.stats.tables[1] = self.read_model.tasks
        self.positions = InMemoryWritePositions()
        self.checkpoints = InMemoryCheckpointStore()
        self.queries = TaskQueries(
            self.read_model,
            self.stats,
            self.cache,
            self.positions,
            self.checkpoints,
            FixedGenerations(),
            timeout,
        )
        self.projector = TaskListProjection(
            table=lambda g: self.read_model.tasks, cache=self.cache.invalidator
        ).projector(1)
        self.history = TaskHistory()
        self.applied = 0

    async def project(self) -> None:
        """What the projector process does: apply, then advance every checkpoint."""
        batch = self.history.envelopes[self.applied :]
        await self.projector.apply(batch)
        self.applied = len(self.history.envelopes)
        self.read_model.checkpoints["Tasks"] = self.applied
        for name in ("task_list", "task_stats"):
            await self.checkpoints.advance(name, 1, "Tasks", self.applied)

    async def write(self) -> None:
        """A command answered: its position is remembered for the user."""
        await self.positions.wrote(ALICE, "Tasks", len(self.history.envelopes))


def titles(body: bytes) -> list[str]:
    decoded: list[str] = json.loads(body)
    return decoded


def render(page: TaskPage) -> bytes:
    return json.dumps([row.title for row in page.items]).encode()


async def test_a_read_waits_for_the_projection_to_pass_the_users_own_write() -> None:
    world = World()
    task = world.history.create(ALICE, title="first")
    await world.write()
    late = asyncio.create_task(asyncio.sleep(0.05))
    late.add_done_callback(lambda _: asyncio.ensure_future(world.project()))
    assert (await world.queries.task(ALICE, task)).title == "first"
    world.history.edit(task, title="second")
    await world.write()
    asyncio.get_running_loop().call_later(0.03, lambda: asyncio.ensure_future(world.project()))
    body = await world.queries.page(ALICE, TaskQuery(), "all", render)
    assert titles(body) == ["second"]


async def test_a_projection_that_never_catches_up_is_waited_for_only_so_long() -> None:
    world = World(timeout=0.05)
    world.history.create(ALICE, title="seen")
    await world.project()
    world.history.create(ALICE, title="not yet projected")
    await world.write()
    assert titles(await world.queries.page(ALICE, TaskQuery(), "all", render)) == ["seen"]
    # Filed, if at all, under the version its rows include: the projection's next step retires it.
    assert all(token.version <= 1 for token, _, _ in world.cache.pages)
    await world.project()
    both = titles(await world.queries.page(ALICE, TaskQuery(), "all", render))
    assert sorted(both) == ["not yet projected", "seen"]


async def test_pages_are_cached_until_the_users_tasks_change() -> None:
    world = World()
    task = world.history.create(ALICE, title="a")
    await world.write()
    await world.project()
    first = await world.queries.page(ALICE, TaskQuery(), "all", render)
    assert len(world.cache.pages) == 1
    world.read_model.tasks._docs.clear()  # the cache answers without the read model...
    assert await world.queries.page(ALICE, TaskQuery(), "all", render) == first
    world.history.edit(task, title="b")
    await world.project()  # ...until a change to her tasks raises her version
    assert titles(await world.queries.page(ALICE, TaskQuery(), "all", render)) == []


async def test_task_not_found_for_missing_tasks() -> None:
    world = World()
    with pytest.raises(TaskNotFound):
        await world.queries.task(ALICE, UUID(int=99))


async def test_counts_come_from_the_read_model_when_the_counters_cannot_answer() -> None:
    world = World()
    world.history.create(ALICE, due=EPOCH)
    world.history.create(ALICE, status="done")
    await world.write()
    await world.project()
    now = EPOCH + timedelta(days=1)
    expected = await world.read_model.tasks.counts(ALICE, now)
    assert (expected.todo, expected.done, expected.overdue) == (1, 1, 1)
    world.stats.tables[1] = type(world.read_model.tasks)(1)  # counters that would say zero
    assert (await world.queries.counts(ALICE, now)).total == 0
    world.stats.down = True
    assert await world.queries.counts(ALICE, now) == expected


async def test_no_page_is_filed_under_a_version_the_rows_read_may_lack() -> None:
    world = World(timeout=0.01)
    world.history.create(ALICE, title="a")
    await world.project()
    # The projector raised her version for rows a lagging secondary may not hold yet.
    world.cache.versions[(1, ALICE)] = 5
    await world.queries.page(ALICE, TaskQuery(), "all", render)
    assert world.cache.pages == {}
