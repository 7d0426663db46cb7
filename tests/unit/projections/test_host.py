"""The projector service follows the aliases: switches, retirements, in-place pauses, crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from domain.meta import SYSTEM
from projections.aliases import AliasState, InMemoryAliasRegistry
from projections.checkpoints import InMemoryCheckpointStore, LogMark
from projections.host import ProjectionHost
from projections.parked import InMemoryParkedEvents
from projections.rebuild import Rebuild
from projections.runner import Pacing
from tests.fixtures.projections import MemoryProjection, eventually
from tests.unit.projections.test_runner_properties import History, record

PACING = Pacing(poll_min=0.005, poll_max=0.02, retry_min=0.01, retry_max=0.05)


@dataclass
class Running:
    history: History
    projection: MemoryProjection
    host: ProjectionHost
    checkpoints: InMemoryCheckpointStore
    aliases: InMemoryAliasRegistry
    parked: InMemoryParkedEvents

    def rebuild(self) -> Rebuild:
        return Rebuild(
            self.host.logs,
            self.checkpoints,
            self.parked,
            self.aliases,
            pacing=PACING,
            grace=0,
            host_refresh=self.host.refresh,
            stale_worker=5,
        )

    def events(self) -> int:
        return sum(
            len(log.read(0, 10_000, (), log.head()).items) for log in self.host.logs.values()
        )

    def complete(self, generation: int) -> bool:
        state = self.projection.generations.get(generation, {})
        return sum(len(v) for v in state.values()) == self.events()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    history = record([("create", i, 0) for i in range(4)] + [("edit", 1, 1), ("delete", 2, 0)])
    projection = MemoryProjection()
    checkpoints, parked, aliases = (
        InMemoryCheckpointStore(),
        InMemoryParkedEvents(),
        InMemoryAliasRegistry(),
    )
    host = ProjectionHost(
        [projection],
        history.logs(),
        checkpoints,
        parked,
        aliases,
        pacing=PACING,
        refresh=0.02,
        worker="w1",
    )
    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    yield Running(history, projection, host, checkpoints, aliases, parked)
    stop.set()
    await task


def _append(running: Running) -> None:
    owner = running.history.identity.find_by_email("u0@example.com")
    assert owner is not None
    running.history.tasks.create_task(owner_id=owner.id, title="new", meta=SYSTEM)


async def test_the_host_creates_the_alias_and_tails_generation_one(running: Running) -> None:
    await eventually(lambda: running.complete(1))
    assert running.host.tailing() == [("memory", 1)]
    _append(running)
    await eventually(lambda: running.complete(1))


async def test_a_blue_green_switch_is_followed_and_the_old_generation_dropped(
    running: Running,
) -> None:
    await eventually(lambda: running.complete(1))
    done = await running.rebuild().blue_green(running.projection)

    assert (done.generation, done.replaced) == (2, 1)
    alias = await running.aliases.get("memory")
    assert alias is not None
    assert (alias.generation, alias.retiring) == (2, ())
    assert 1 not in running.projection.generations  # dropped
    assert await running.checkpoints.positions("memory", 1) == {}
    await eventually(lambda: running.host.tailing() == [("memory", 2)])
    _append(running)  # the host, not the finished rebuild, keeps generation 2 current
    await eventually(lambda: running.complete(2))


async def test_an_in_place_rebuild_starts_only_once_the_host_let_go(running: Running) -> None:
    await eventually(lambda: running.complete(1))
    tailing_at_drop: list[list[tuple[str, int]]] = []
    drop = running.projection.drop

    async def observed_drop(generation: int) -> None:
        tailing_at_drop.append(running.host.tailing())
        await drop(generation)

    running.projection.drop = observed_drop  # type: ignore[method-assign]
    done = await running.rebuild().in_place(running.projection)

    assert (done.generation, done.replaced) == (1, None)
    assert tailing_at_drop == [[]]
    alias = await running.aliases.get("memory")
    assert alias is not None
    assert alias.state is AliasState.LIVE
    assert running.complete(1)
    await eventually(lambda: running.host.tailing() == [("memory", 1)])
    _append(running)
    await eventually(lambda: running.complete(1))


class FailingOnce(InMemoryCheckpointStore):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

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
        if not self.failed:
            self.failed = True
            raise RuntimeError("checkpoint store refused the write")
        return await super().advance(projection, generation, upstream, position, epoch, mark=mark)


async def test_a_runner_that_dies_is_restarted_from_its_checkpoint() -> None:
    history = record([("create", i, 0) for i in range(3)])
    projection = MemoryProjection()
    checkpoints = FailingOnce()
    host = ProjectionHost(
        [projection],
        history.logs(),
        checkpoints,
        InMemoryParkedEvents(),
        InMemoryAliasRegistry(),
        pacing=PACING,
        refresh=0.02,
    )
    heads = {name: log.head() for name, log in host.logs.items()}

    async def caught_up() -> bool:
        return await checkpoints.positions("memory", 1) == heads

    stop = asyncio.Event()
    task = asyncio.create_task(host.run(stop))
    try:
        await eventually(caught_up)
    finally:
        stop.set()
        await task
    assert checkpoints.failed


async def test_a_retiring_generation_another_process_still_tails_is_not_dropped() -> None:
    history = record([("create", i, 0) for i in range(2)])
    projection = MemoryProjection()
    aliases = InMemoryAliasRegistry()
    host = ProjectionHost(
        [projection],
        history.logs(),
        InMemoryCheckpointStore(),
        InMemoryParkedEvents(),
        aliases,
        pacing=PACING,
        worker="w1",
    )
    projection.generations[1] = {"kept": [1]}
    await aliases.ensure("memory", 1)
    await aliases.begin_rebuild("memory", 1)
    await aliases.switch("memory", to=2, drop_after=datetime.now(UTC) - timedelta(seconds=1))
    await aliases.heartbeat("w2", {"memory": 0}, ["memory:1"])  # a slower process
    try:
        await host.reconcile()
        assert 1 in projection.generations
        await aliases.heartbeat("w2", {"memory": 0}, [])  # it let go
        await host.reconcile()
        assert 1 not in projection.generations
    finally:
        for key in host.tailing():
            await host._stop(key)
