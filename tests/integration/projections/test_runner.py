"""The runner over both event stores into MongoDB: catch-up, live tail, poison, crashes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from domain.meta import SYSTEM
from projections.checkpoints import InMemoryCheckpointStore, LogMark
from projections.log import watch
from projections.parked import InMemoryParkedEvents, MongoParkedEvents
from projections.runner import Pacing, ProjectionRunner
from tests.fixtures.projections import (
    Crash,
    Stores,
    TitlesProjection,
    eventually,
    write_history,
)


def _runner(
    projection: TitlesProjection,
    stores: Stores,
    checkpoints: Any,
    parked: Any,
    generation: int = 1,
    **pacing: Any,
) -> ProjectionRunner:
    return ProjectionRunner(
        projection, generation, stores.logs, checkpoints, parked, pacing=Pacing(**pacing)
    )


async def test_catches_up_with_both_logs_up_to_their_heads(
    stores: Stores, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    write_history(stores.write, tasks=7)
    projection = TitlesProjection(mongo_db)
    checkpoints = InMemoryCheckpointStore()
    await _runner(projection, stores, checkpoints, InMemoryParkedEvents(), batch_size=4).catch_up()

    snapshot = await projection.snapshot(1)
    assert sorted(t["title"] for t in snapshot["tasks"]) == sorted(f"task {i}!" for i in range(7))
    assert sum(t["deleted"] for t in snapshot["tasks"]) == 3  # tasks 0, 3, 6
    assert [u["email"] for u in snapshot["users"]] == ["owner@example.com"]
    # The last Tasks events are status changes this projection does not handle: the
    # checkpoint still reaches the head, or read-your-writes would wait for nothing.
    assert await checkpoints.positions("titles", 1) == {
        name: log.head() for name, log in stores.logs.items()
    }


async def test_tails_new_events_woken_by_the_store_not_by_polling(
    stores: Stores, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    write_history(stores.write, tasks=1)
    projection = TitlesProjection(mongo_db)
    checkpoints = InMemoryCheckpointStore()
    # A 60 s poll: only a wake-up (LISTEN/NOTIFY, or the SQLite file watch) can explain
    # seeing the new task within the 20 s the check allows.
    runner = _runner(
        projection, stores, checkpoints, InMemoryParkedEvents(), poll_min=60, poll_max=60
    )
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(list(stores.logs.values())))
    running = asyncio.create_task(runner.run(stop))
    try:
        head = stores.logs["Tasks"].head()
        await eventually(lambda: checkpoints.position("titles", 1, "Tasks"))
        assert await checkpoints.position("titles", 1, "Tasks") == head
        await asyncio.sleep(0.3)  # let the reader settle into its long sleep
        owner = stores.write.identity.find_by_email("owner@example.com")
        assert owner is not None
        task = stores.write.tasks.create_task(owner_id=owner.id, title="late", meta=SYSTEM).id
        tasks = mongo_db["titles_v1_tasks"]
        await eventually(lambda: tasks.find_one({"_id": str(task)}))
    finally:
        stop.set()
        await running
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert running.exception() is None


async def test_a_poison_event_is_parked_and_the_rest_flows(
    stores: Stores, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    write_history(stores.write, tasks=5, poison_at=2)
    projection = TitlesProjection(mongo_db)
    parked = MongoParkedEvents(mongo_db)
    checkpoints = InMemoryCheckpointStore()
    applied_before = _sample("taskledger_projection_events_applied_total")
    runner = _runner(projection, stores, checkpoints, parked, batch_size=100)
    runner.live = True  # the live generation reports metrics
    await runner.catch_up()

    [poison] = await parked.list("titles", 1)
    assert (poison.upstream, poison.topic) == ("Tasks", "domain.tasks:Task.Created")
    assert "poison title" in poison.error
    # Its later edit still lands (an upsert); every other task is whole.
    titles = sorted(t["title"] for t in (await projection.snapshot(1))["tasks"])
    assert titles == sorted(f"task {i}!" for i in range(5))
    head = stores.logs["Tasks"].head()
    assert await checkpoints.position("titles", 1, "Tasks") == head
    assert _sample("taskledger_projection_parked_events") == 1
    assert _sample("taskledger_projection_position", upstream="Tasks") == head
    assert _sample("taskledger_projection_head", upstream="Tasks") == head
    assert _sample("taskledger_projection_lag_events", upstream="Tasks") == 0
    assert _sample("taskledger_projection_lag_seconds", upstream="Tasks") == 0
    # Every handled event but the poison one: 1 registration, 5 x (created, edited), 2 deleted.
    assert _sample("taskledger_projection_events_applied_total") - applied_before == 1 + 10 + 2 - 1


def _sample(metric: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(metric, {"projection": "titles", **labels})
    return 0.0 if value is None else value


class CrashOnFirstAdvance(InMemoryCheckpointStore):
    """Dies once, after the projector wrote and before the checkpoint moved."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

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
        if not self.crashed and upstream == "Tasks":
            self.crashed = True
            raise Crash
        return await super().advance(projection, generation, upstream, position, epoch, mark=mark)


async def test_a_crash_between_write_and_checkpoint_reapplies_harmlessly(
    stores: Stores, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    write_history(stores.write, tasks=6)
    projection = TitlesProjection(mongo_db)
    checkpoints = CrashOnFirstAdvance()
    parked = InMemoryParkedEvents()
    first = _runner(projection, stores, checkpoints, parked, batch_size=5)
    with pytest.raises(Crash):
        await first.catch_up()
    assert checkpoints.crashed
    await _runner(projection, stores, checkpoints, parked, batch_size=5).catch_up()

    applied = projection.applied[1]
    assert len(applied) > len(set(applied)), "the crashed batch was applied again"
    # One clean pass into another generation gives the same read model.
    await _runner(projection, stores, InMemoryCheckpointStore(), parked, generation=2).catch_up()
    assert await projection.snapshot(1) == await projection.snapshot(2)
    assert await parked.count("titles") == 0
