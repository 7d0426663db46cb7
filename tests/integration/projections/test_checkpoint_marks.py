"""A checkpoint that claims more than its log holds stops its projection (PostgreSQL logs).

The two disasters of issue 11, item 3: a fresh event store beside a Redis that still holds an
earlier system's checkpoints, and an event store restored from a backup older than the
document store, whose new events reuse positions the checkpoints have passed.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from domain.meta import SYSTEM
from ops.bootstrap import WriteSide, build_write_side
from projections.checkpoints import MongoCheckpointStore, RedisCheckpointStore
from projections.log import checkpoint_problem
from projections.parked import InMemoryParkedEvents
from projections.runner import CheckpointMismatchError, Pacing, ProjectionRunner
from tests.fixtures.api import _truncate
from tests.fixtures.projections import Stores, TitlesProjection, write_history
from tests.integration.projections.test_cli import registered, run_cli

__all__ = ["registered"]

POSTGRES_ONLY = pytest.mark.parametrize("event_store_url", ["postgres"], indirect=True)


def _mismatch_gauge(upstream: str) -> float | None:
    return REGISTRY.get_sample_value(
        "taskledger_projection_checkpoint_mismatch",
        {"projection": "titles", "upstream": upstream},
    )


def _grow(write: WriteSide, tasks: int) -> None:
    """More events in the log: a new user with ``tasks`` tasks (created, edited)."""
    owner = write.identity.register(
        email=f"{uuid4().hex}@example.com", display_name="Other", password_hash="x", meta=SYSTEM
    ).id
    for i in range(tasks):
        task = write.tasks.create_task(owner_id=owner, title=f"new {i}", meta=SYSTEM).id
        write.tasks.update_task(task, actor=owner, changes={"title": f"new {i}!"}, meta=SYSTEM)


def _runner(projection: TitlesProjection, stores: Stores, checkpoints: Any) -> ProjectionRunner:
    return ProjectionRunner(
        projection,
        1,
        stores.logs,
        checkpoints,
        InMemoryParkedEvents(),
        pacing=Pacing(batch_size=7),
        live=True,
    )


@POSTGRES_ONLY
async def test_a_fresh_event_store_beside_an_earlier_systems_checkpoints(
    stores: Stores,
    mongo_db: AsyncDatabase[dict[str, Any]],
    redis_url: str,
    redis_prefix: str,
) -> None:
    redis = Redis.from_url(redis_url)
    checkpoints = RedisCheckpointStore(redis, redis_prefix)
    try:
        write_history(stores.write, tasks=6)
        await _runner(TitlesProjection(mongo_db), stores, checkpoints).catch_up()
        earlier = await checkpoints.position("titles", 1, "Tasks")
        assert earlier == stores.logs["Tasks"].head() > 0

        # A new system: same Redis, a fresh PostgreSQL event store with fewer events.
        stores.write.close()
        assert stores.settings.event_store_url
        _truncate(stores.settings.event_store_url)
        stores.write = build_write_side(stores.settings)
        write_history(stores.write, tasks=2)
        assert stores.logs["Tasks"].head() < earlier
        fresh = TitlesProjection(mongo_db)
        # Both logs are foreign; whichever follower checks first stops the runner.
        with pytest.raises(CheckpointMismatchError, match=r"ahead of|taken on another"):
            await _runner(fresh, stores, checkpoints).catch_up()
        assert 1 in (_mismatch_gauge("Tasks"), _mismatch_gauge("Identity"))
        tasks = await checkpoints.read("titles", 1, "Tasks")
        assert "ahead of the Tasks log's head" in str(
            checkpoint_problem(stores.logs["Tasks"], tasks)
        )
        assert fresh.applied.get(1, []) == []
        assert await checkpoints.position("titles", 1, "Tasks") == earlier

        # Once the new log has grown past it, a position check alone would let it resume,
        # skipping every new event below ``earlier``; the mark does not.
        _grow(stores.write, tasks=12)
        assert stores.logs["Tasks"].head() > earlier
        with pytest.raises(CheckpointMismatchError, match=r"taken on another (Identity|Tasks) log"):
            await _runner(fresh, stores, checkpoints).catch_up()
        assert fresh.applied.get(1, []) == []
        tasks = await checkpoints.read("titles", 1, "Tasks")
        assert "taken on another Tasks log" in str(checkpoint_problem(stores.logs["Tasks"], tasks))

        # The way out: rebuild (here in place), and it follows the new log.
        await checkpoints.reset("titles", 1)
        await _runner(fresh, stores, checkpoints).catch_up()
        assert await checkpoints.position("titles", 1, "Tasks") == stores.logs["Tasks"].head()
        assert (_mismatch_gauge("Tasks"), _mismatch_gauge("Identity")) == (0, 0)
    finally:
        await redis.aclose()


def _restore_older_backup(url: str, position: int) -> None:
    """What restoring a base backup taken at ``position`` does to the Tasks log."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM tasks_events WHERE notification_id > %s", (position,))
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('tasks_events', 'notification_id'), %s)",
            (position,),
        )


@POSTGRES_ONLY
@pytest.mark.usefixtures("registered")
async def test_a_restore_from_an_older_backup_stops_the_projection_until_rebuilt(
    stores: Stores, mongo_db: AsyncDatabase[dict[str, Any]]
) -> None:
    write_history(stores.write, tasks=3)
    backup_taken_at = stores.logs["Tasks"].head()
    _grow(stores.write, tasks=4)
    built = await asyncio.to_thread(run_cli, stores.settings, "projections", "rebuild", "titles")
    assert built.exit_code == 0, built.stderr
    checkpoints = MongoCheckpointStore(mongo_db)
    passed = await checkpoints.position("titles", 2, "Tasks")
    assert passed == stores.logs["Tasks"].head() > backup_taken_at

    assert stores.settings.event_store_url
    _restore_older_backup(stores.settings.event_store_url, backup_taken_at)
    stores.write.close()
    stores.write = build_write_side(stores.settings)
    # New events reuse the positions, and the head passes the checkpoint.
    _grow(stores.write, tasks=12)
    assert stores.logs["Tasks"].head() > passed

    status = await asyncio.to_thread(run_cli, stores.settings, "projections", "status")
    assert status.exit_code == 0, status.stderr
    assert "stopped" in status.stdout
    assert "diverged" in status.stdout

    projection = TitlesProjection(mongo_db)
    runner = ProjectionRunner(
        projection, 2, stores.logs, checkpoints, InMemoryParkedEvents(), live=True
    )
    with pytest.raises(CheckpointMismatchError, match="diverged"):
        await runner.catch_up()
    assert _mismatch_gauge("Tasks") == 1
    assert projection.applied.get(2, []) == []

    rebuilt = await asyncio.to_thread(run_cli, stores.settings, "projections", "rebuild", "titles")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    after = await asyncio.to_thread(run_cli, stores.settings, "projections", "status")
    assert "stopped" not in after.stdout
    assert await checkpoints.position("titles", 3, "Tasks") == stores.logs["Tasks"].head()
