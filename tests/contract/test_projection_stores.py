"""Contracts of the projection engine's ports: checkpoints, parked events, aliases.

Each suite runs against the in-memory adapter and the MongoDB one (on SecantusDB); checkpoints
also against Redis (where Redis-only projections keep theirs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from projections.aliases import (
    AliasConflictError,
    AliasRegistry,
    AliasState,
    InMemoryAliasRegistry,
    LiveGenerations,
    MongoAliasRegistry,
)
from projections.checkpoints import (
    Checkpoint,
    CheckpointStore,
    InMemoryCheckpointStore,
    LogMark,
    MongoCheckpointStore,
    RedisCheckpointStore,
)
from projections.parked import InMemoryParkedEvents, MongoParkedEvents, ParkedEvent, ParkedEvents

ADAPTERS = ["memory", "mongo"]


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "mongo", "redis"])
def checkpoints(request: pytest.FixtureRequest) -> CheckpointStore:
    if request.param == "memory":
        return InMemoryCheckpointStore()
    if request.param == "mongo":
        db: AsyncDatabase[dict[str, Any]] = request.getfixturevalue("mongo_db")
        return MongoCheckpointStore(db)
    redis: Redis = request.getfixturevalue("redis")
    return RedisCheckpointStore(redis, request.getfixturevalue("redis_prefix"))


@pytest.fixture
def parked(adapter: str, request: pytest.FixtureRequest) -> ParkedEvents:
    if adapter == "memory":
        return InMemoryParkedEvents()
    return MongoParkedEvents(request.getfixturevalue("mongo_db"))


@pytest.fixture
def aliases(adapter: str, request: pytest.FixtureRequest) -> AliasRegistry:
    if adapter == "memory":
        return InMemoryAliasRegistry()
    return MongoAliasRegistry(request.getfixturevalue("mongo_db"))


# ------------------------------------------------------------------------------ checkpoints


async def test_a_checkpoint_starts_at_zero(checkpoints: CheckpointStore) -> None:
    assert await checkpoints.position("p", 1, "Tasks") == 0
    assert await checkpoints.positions("p", 1) == {}


async def test_a_checkpoint_advances_per_projection_generation_and_upstream(
    checkpoints: CheckpointStore,
) -> None:
    await checkpoints.advance("p", 1, "Tasks", 10)
    await checkpoints.advance("p", 1, "Identity", 3)
    await checkpoints.advance("p", 2, "Tasks", 4)
    await checkpoints.advance("q", 1, "Tasks", 7)
    assert await checkpoints.position("p", 1, "Tasks") == 10
    assert await checkpoints.positions("p", 1) == {"Tasks": 10, "Identity": 3}
    assert await checkpoints.positions("p", 2) == {"Tasks": 4}
    assert await checkpoints.position("q", 1, "Tasks") == 7


async def test_a_checkpoint_never_moves_back(checkpoints: CheckpointStore) -> None:
    await checkpoints.advance("p", 1, "Tasks", 10)
    await checkpoints.advance("p", 1, "Tasks", 4)
    assert await checkpoints.position("p", 1, "Tasks") == 10


async def test_reset_forgets_one_generation_only(checkpoints: CheckpointStore) -> None:
    await checkpoints.advance("p", 1, "Tasks", 10)
    await checkpoints.advance("p", 2, "Tasks", 5)
    await checkpoints.reset("p", 1)
    assert await checkpoints.position("p", 1, "Tasks") == 0
    assert await checkpoints.position("p", 2, "Tasks") == 5
    await checkpoints.advance("p", 1, "Tasks", 2)
    assert await checkpoints.position("p", 1, "Tasks") == 2


async def test_a_writer_claims_the_position_it_starts_from(checkpoints: CheckpointStore) -> None:
    first = await checkpoints.claim("p", 1, "Tasks")
    assert first.position == 0
    assert await checkpoints.advance("p", 1, "Tasks", 7, first.epoch)
    again = await checkpoints.claim("p", 1, "Tasks")
    assert (again.position, again.epoch) == (7, first.epoch)


async def test_a_writer_that_claimed_before_a_reset_cannot_advance_after_it(
    checkpoints: CheckpointStore,
) -> None:
    stale = await checkpoints.claim("p", 1, "Tasks")
    other = await checkpoints.claim("p", 1, "Identity")
    await checkpoints.advance("p", 1, "Tasks", 40, stale.epoch)
    await checkpoints.reset("p", 1)  # in-place rebuild
    fresh = await checkpoints.claim("p", 1, "Tasks")
    assert (fresh.position, fresh.epoch == stale.epoch) == (0, False)
    # The late runner's $max upsert would put the checkpoint back at 90: it must not.
    assert not await checkpoints.advance("p", 1, "Tasks", 90, stale.epoch)
    assert not await checkpoints.advance("p", 1, "Identity", 90, other.epoch)
    assert await checkpoints.position("p", 1, "Tasks") == 0
    assert await checkpoints.positions("p", 1) == {}
    assert await checkpoints.advance("p", 1, "Tasks", 3, fresh.epoch)
    assert await checkpoints.position("p", 1, "Tasks") == 3


MARK_10 = LogMark("a1:1", "b2:3")
MARK_12 = LogMark("a1:1", "c3:1")


async def test_a_checkpoint_keeps_the_mark_of_its_position(checkpoints: CheckpointStore) -> None:
    claimed = await checkpoints.claim("p", 1, "Tasks")
    assert claimed.mark is None
    assert await checkpoints.advance("p", 1, "Tasks", 10, claimed.epoch, mark=MARK_10)
    assert (await checkpoints.claim("p", 1, "Tasks")).mark == MARK_10
    assert await checkpoints.read("p", 1, "Tasks") == Checkpoint(10, claimed.epoch, MARK_10)
    # A slower writer behind it changes neither the position nor the mark that goes with it.
    assert await checkpoints.advance("p", 1, "Tasks", 7, claimed.epoch, mark=MARK_12)
    assert await checkpoints.read("p", 1, "Tasks") == Checkpoint(10, claimed.epoch, MARK_10)
    assert await checkpoints.advance("p", 1, "Tasks", 12, claimed.epoch, mark=MARK_12)
    assert (await checkpoints.read("p", 1, "Tasks")).mark == MARK_12
    assert await checkpoints.positions("p", 1) == {"Tasks": 12}


async def test_a_checkpoint_without_a_mark_gets_one_on_its_next_advance(
    checkpoints: CheckpointStore,
) -> None:
    """Checkpoints stored by the release before marks load as they are, and get one."""
    await checkpoints.advance("p", 1, "Tasks", 10)
    claimed = await checkpoints.claim("p", 1, "Tasks")
    assert (claimed.position, claimed.mark) == (10, None)
    assert await checkpoints.advance("p", 1, "Tasks", 10, claimed.epoch, mark=MARK_10)
    assert await checkpoints.read("p", 1, "Tasks") == Checkpoint(10, claimed.epoch, MARK_10)
    # A position written without a mark drops the old one: it named another position.
    assert await checkpoints.advance("p", 1, "Tasks", 11, claimed.epoch)
    assert await checkpoints.read("p", 1, "Tasks") == Checkpoint(11, claimed.epoch, None)


async def test_reset_forgets_the_marks(checkpoints: CheckpointStore) -> None:
    claimed = await checkpoints.claim("p", 1, "Tasks")
    await checkpoints.advance("p", 1, "Tasks", 10, claimed.epoch, mark=MARK_10)
    await checkpoints.reset("p", 1)
    after = await checkpoints.read("p", 1, "Tasks")
    assert (after.position, after.mark) == (0, None)
    assert not await checkpoints.advance("p", 1, "Tasks", 12, claimed.epoch, mark=MARK_12)
    assert (await checkpoints.read("p", 1, "Tasks")).mark is None


# ---------------------------------------------------------------------------- parked events


def _parked(position: int, generation: int = 1, error: str = "boom") -> ParkedEvent:
    return ParkedEvent(
        projection="p",
        generation=generation,
        upstream="Tasks",
        position=position,
        topic="domain.tasks:Task.Created",
        error=error,
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_parked_events_are_counted_and_listed_in_order(parked: ParkedEvents) -> None:
    await parked.park(_parked(9))
    await parked.park(_parked(3))
    await parked.park(_parked(4, generation=2))
    assert await parked.count("p") == 3
    assert await parked.count("p", 1) == 2
    assert await parked.count("other") == 0
    assert [e.position for e in await parked.list("p", 1)] == [3, 9]
    assert await parked.list("p", 2) == [_parked(4, generation=2)]


async def test_parking_the_same_position_again_keeps_one(parked: ParkedEvents) -> None:
    await parked.park(_parked(3, error="first"))
    await parked.park(_parked(3, error="second"))
    assert [e.error for e in await parked.list("p", 1)] == ["second"]


async def test_forget_removes_one_generation(parked: ParkedEvents) -> None:
    await parked.park(_parked(3))
    await parked.park(_parked(4, generation=2))
    await parked.forget("p", 1)
    assert await parked.count("p") == 1
    assert await parked.count("p", 2) == 1


# ---------------------------------------------------------------------------------- aliases


async def test_an_alias_starts_at_generation_one(aliases: AliasRegistry) -> None:
    assert await aliases.get("p") is None
    alias = await aliases.ensure("p", version=3)
    assert (alias.generation, alias.version, alias.state, alias.building) == (
        1,
        3,
        AliasState.LIVE,
        None,
    )
    assert await aliases.ensure("p", version=4) == alias
    assert await aliases.get("p") == alias


async def test_blue_green_switch_retires_the_old_generation(aliases: AliasRegistry) -> None:
    await aliases.ensure("p", 1)
    building = await aliases.begin_rebuild("p", 2)
    assert (building.generation, building.building) == (1, 2)
    assert await aliases.begin_rebuild("p", 2) == building  # an interrupted rebuild resumes
    drop_after = datetime(2030, 1, 1, tzinfo=UTC)
    live = await aliases.switch("p", to=2, drop_after=drop_after)
    assert (live.generation, live.version, live.building) == (2, 2, None)
    assert [(r.generation, r.drop_after) for r in live.retiring] == [(1, drop_after)]
    assert live.tailed(datetime(2029, 1, 1, tzinfo=UTC)) == (2, 1)
    assert live.tailed(drop_after) == (2,)
    await aliases.retired("p", 1)
    alias = await aliases.get("p")
    assert alias is not None
    assert alias.retiring == ()
    assert (await aliases.begin_rebuild("p", 2)).building == 3  # numbers are never reused


async def test_switching_to_a_generation_not_being_built_is_refused(
    aliases: AliasRegistry,
) -> None:
    await aliases.ensure("p", 1)
    with pytest.raises(AliasConflictError):
        await aliases.switch("p", to=2, drop_after=datetime.now(UTC))
    alias = await aliases.get("p")
    assert alias is not None
    assert alias.generation == 1


async def test_pause_hands_the_live_generation_to_an_in_place_rebuild(
    aliases: AliasRegistry,
) -> None:
    await aliases.ensure("p", 1)
    paused = await aliases.pause("p")
    assert (paused.state, paused.epoch) == (AliasState.PAUSED, 1)
    assert paused.tailed(datetime.now(UTC)) == ()
    with pytest.raises(AliasConflictError):
        await aliases.begin_rebuild("p", 1)
    resumed = await aliases.resume("p", 2)
    assert (resumed.state, resumed.version, resumed.generation) == (AliasState.LIVE, 2, 1)


async def test_pause_is_refused_during_a_blue_green_rebuild(aliases: AliasRegistry) -> None:
    await aliases.ensure("p", 1)
    await aliases.begin_rebuild("p", 1)
    with pytest.raises(AliasConflictError):
        await aliases.pause("p")
    with pytest.raises(AliasConflictError):
        await aliases.pause("never-created")


async def test_heartbeats_say_who_tails_what(aliases: AliasRegistry) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    await aliases.heartbeat("w1", {"p": 2}, ["p:1"])
    await aliases.heartbeat("w2", {"p": 1}, [])
    workers = {w.id: w for w in await aliases.workers(before)}
    assert workers["w1"].epochs == {"p": 2}
    assert workers["w1"].tailing == ("p:1",)
    assert workers["w2"].tailing == ()
    assert await aliases.workers(datetime.now(UTC) + timedelta(seconds=5)) == []
    await aliases.leave("w1")
    assert [w.id for w in await aliases.workers(before)] == ["w2"]


async def test_live_generations_follow_the_alias_after_the_cache_expires(
    aliases: AliasRegistry,
) -> None:
    live = LiveGenerations(aliases, ttl=0.0)
    cached = LiveGenerations(aliases, ttl=1.0)
    assert await live.of("p") == 1
    await aliases.ensure("p", 1)
    assert await cached.of("p") == 1
    await aliases.begin_rebuild("p", 1)
    await aliases.switch("p", to=2, drop_after=datetime.now(UTC))
    assert await live.of("p") == 2
    assert await cached.of("p") == 1  # within its ttl
