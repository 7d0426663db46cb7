"""TaskQueries on in-memory adapters: read-your-writes waits, the cache rule, the fallbacks."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from uuid import UUID

import pytest

from domain.errors import TaskNotFound
from projections.task_list.memory import (
    InMemoryPageCache,
    InMemoryTaskReader,
    InMemoryTaskReadModel,
)
from projections.task_list.model import TaskFilter, TaskPage, TaskQuery
from projections.task_list.projection import TaskListProjection
from projections.task_stats.memory import InMemoryTaskStats
from projections.write_positions import InMemoryWritePositions
from queries.tasks.reads import TaskQueries
from tests.fixtures.read_side import EPOCH, TaskHistory

ALICE = UUID(int=1)


class FixedGenerations:
    async def of(self, name: str) -> int:
        return 1


class LaggingReader(InMemoryTaskReader):
    """A projection that catches up while the reader waits: on the reader's Nth checkpoint read."""

    def __init__(self, world: World, nth: int) -> None:
        super().__init__(world.read_model.tasks, world.read_model.checkpoints)
        self._world = world
        self._reads_left = nth

    async def checkpoint(self, upstream: str) -> int:
        self._reads_left -= 1
        if self._reads_left == 0:
            await self._world.project()
        return await super().checkpoint(upstream)


class LaggingReadModel(InMemoryTaskReadModel):
    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.lag: int | None = None  # the projection catches up on this checkpoint read

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[InMemoryTaskReader]:
        if self.lag is None:
            yield InMemoryTaskReader(self.tasks, self.checkpoints)
        else:
            yield LaggingReader(self.world, self.lag)


class World:
    def __init__(self, timeout: float = 1.0) -> None:
        self.read_model = LaggingReadModel(self)
        self.cache = InMemoryPageCache()
        self.stats = InMemoryTaskStats()
        self.stats.tables[1] = self.read_model.tasks
        self.positions = InMemoryWritePositions()
        self.queries = TaskQueries(
            self.read_model,
            self.stats,
            self.cache,
            self.positions,
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
        self.stats.checkpoints[1, "Tasks"] = self.applied

    async def write(self) -> None:
        """A command answered: its position is remembered for the user."""
        await self.positions.wrote(ALICE, "Tasks", len(self.history.envelopes))


def titles(body: bytes) -> list[str]:
    decoded: list[str] = json.loads(body)
    return decoded


def render(page: TaskPage) -> bytes:
    return json.dumps([row.title for row in page.items]).encode()


async def test_a_read_waits_for_the_projection_to_pass_the_users_own_write() -> None:
    # No timing: the projection catches up on the reader's third checkpoint read, so a reader
    # that did not wait (or gave up early) would miss the change.
    world = World(timeout=10.0)
    world.read_model.lag = 3
    task = world.history.create(ALICE, title="first")
    await world.write()
    assert (await world.queries.task(ALICE, task)).title == "first"
    world.history.edit(task, title="second")
    await world.write()
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


async def test_counters_behind_the_users_write_are_not_served() -> None:
    # Their checkpoint lives in Redis with them: a Redis that lost recent writes lost it too.
    world = World(timeout=0.01)
    world.history.create(ALICE, status="done")
    await world.write()
    await world.project()
    world.stats.checkpoints[1, "Tasks"] = 0
    world.stats.tables[1] = type(world.read_model.tasks)(1)  # counters that lost the task
    assert (await world.queries.counts(ALICE)).done == 1


def test_a_search_with_control_characters_matches_them_literally() -> None:
    pattern = TaskFilter(text="a\x00b\n.*").text_pattern()
    assert pattern is not None
    assert "\x00" not in pattern
    assert re.fullmatch(pattern, "a\x00b\n.*")
    assert not re.fullmatch(pattern, "a\x00b\n!*")
