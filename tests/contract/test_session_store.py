"""One contract for every SessionStore: in-memory and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from redis.asyncio import Redis

from commands.auth.memory import InMemorySessionStore
from commands.auth.redis import RedisSessionStore
from commands.auth.session_cache import CachingSessionStore
from commands.auth.sessions import Rotation, Session, SessionStore

TTL = 600


@pytest.fixture(params=["memory", "redis", "cached-redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield InMemorySessionStore()
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        redis_store = RedisSessionStore(client, request.getfixturevalue("redis_prefix"))
        yield CachingSessionStore(redis_store) if request.param == "cached-redis" else redis_store
    finally:
        await client.aclose()


def _session(
    user: UUID, sid: str = "s1", refresh: str = "r1", version: int = 1, lifetime: int = TTL
) -> Session:
    now = int(time.time())
    return Session(user, sid, refresh, version, now, now + lifetime, "10.0.0.1", "agent/1")


async def _open(
    store: SessionStore,
    user: UUID | None = None,
    sid: str = "s1",
    refresh: str = "r1",
    version: int = 1,
) -> Session:
    session = _session(user or uuid4(), sid, refresh, version)
    assert await store.open(session, TTL)
    return session


async def _rotate(
    store: SessionStore, user: UUID, sid: str, spent: str, replacement: str, idle: int = TTL
) -> Rotation:
    outcome, _ = await store.rotate(user, sid, spent, replacement, now=int(time.time()), idle=idle)
    return outcome


async def test_an_open_session_is_active_and_no_other_is(store: SessionStore) -> None:
    session = await _open(store)
    assert await store.is_active(session.user_id, "s1")
    assert not await store.is_active(session.user_id, "s2")
    assert not await store.is_active(uuid4(), "s1")


async def test_rotation_swaps_the_current_refresh_id(store: SessionStore) -> None:
    s = await _open(store)
    assert await _rotate(store, s.user_id, "s1", "r1", "r2") is Rotation.ROTATED
    assert await _rotate(store, s.user_id, "s1", "r2", "r3") is Rotation.ROTATED
    assert await store.is_active(s.user_id, "s1")


async def test_presenting_a_spent_id_revokes_the_session(store: SessionStore) -> None:
    s = await _open(store)
    await _rotate(store, s.user_id, "s1", "r1", "r2")
    assert await _rotate(store, s.user_id, "s1", "r1", "r9") is Rotation.REUSED
    assert not await store.is_active(s.user_id, "s1")
    # The replacement issued by the honest rotation is dead too.
    assert await _rotate(store, s.user_id, "s1", "r2", "r3") is Rotation.UNKNOWN


async def test_an_unknown_session_does_not_rotate(store: SessionStore) -> None:
    assert await _rotate(store, uuid4(), "nope", "r1", "r2") is Rotation.UNKNOWN


async def test_concurrent_rotations_of_one_id_let_at_most_one_win(store: SessionStore) -> None:
    s = await _open(store)
    outcomes = await asyncio.gather(
        *(_rotate(store, s.user_id, "s1", "r1", f"next-{n}") for n in range(20))
    )
    assert outcomes.count(Rotation.ROTATED) == 1
    # Every loser presented a spent id: the session did not survive the race.
    assert not await store.is_active(s.user_id, "s1")


async def test_revoke_ends_one_session_only(store: SessionStore) -> None:
    user = uuid4()
    await _open(store, user, "s1")
    await _open(store, user, "s2", "q1")
    await store.revoke(user, "s1")
    assert not await store.is_active(user, "s1")
    assert await _rotate(store, user, "s1", "r1", "r2") is Rotation.UNKNOWN
    assert await store.is_active(user, "s2")


async def test_revoke_all_ends_every_session_of_that_user_only(store: SessionStore) -> None:
    user, other = uuid4(), uuid4()
    for sid in ("s1", "s2", "s3"):
        await _open(store, user, sid)
    await _open(store, other, "s1")
    await store.revoke_all(user, before_version=2, ttl=TTL)
    for sid in ("s1", "s2", "s3"):
        assert not await store.is_active(user, sid)
    assert await store.is_active(other, "s1")


async def test_after_revoke_all_only_a_newer_user_version_opens(store: SessionStore) -> None:
    user = uuid4()
    await store.revoke_all(user, before_version=5, ttl=TTL)
    assert not await store.open(_session(user, "old", "r", 4), TTL)
    assert not await store.is_active(user, "old")
    assert await store.open(_session(user, "new", "r", 5), TTL)
    # A later revoke_all with an older version does not lower the bar.
    await store.revoke_all(user, before_version=3, ttl=TTL)
    assert not await store.open(_session(user, "old", "r", 4), TTL)


async def test_a_session_ends_when_its_time_is_up(store: SessionStore) -> None:
    user = uuid4()
    assert await store.open(_session(user), 1)
    deadline = time.monotonic() + 10
    while await store.is_active(user, "s1"):
        assert time.monotonic() < deadline, "session still active 10s after a 1s ttl"
        await asyncio.sleep(0.1)
    assert await _rotate(store, user, "s1", "r1", "r2") is Rotation.UNKNOWN


# --- absolute end, listing ----------------------------------------------------------------


async def test_rotation_returns_the_end_and_never_passes_it(store: SessionStore) -> None:
    user = uuid4()
    session = _session(user, lifetime=900)
    assert await store.open(session, TTL)
    outcome, ends = await store.rotate(
        user, "s1", "r1", "r2", now=session.created_at + 10, idle=TTL
    )
    assert (outcome, ends) == (Rotation.ROTATED, session.ends_at)
    # At its end the session is over, however recently it was refreshed.
    outcome, ends = await store.rotate(user, "s1", "r2", "r3", now=session.ends_at, idle=TTL)
    assert (outcome, ends) == (Rotation.UNKNOWN, 0)
    assert not await store.is_active(user, "s1")


async def test_a_session_expires_at_its_end_before_its_idle_timeout(store: SessionStore) -> None:
    user = uuid4()
    assert await store.open(_session(user, lifetime=1), TTL)
    deadline = time.monotonic() + 10
    while await store.is_active(user, "s1"):
        assert time.monotonic() < deadline, "session still active 10s after its 1s lifetime"
        await asyncio.sleep(0.1)


async def test_the_sessions_of_a_user_are_listed_with_their_use(store: SessionStore) -> None:
    user, other = uuid4(), uuid4()
    first = await _open(store, user, "s1")
    await _open(store, user, "s2", "q1")
    await _open(store, other, "s3")
    await store.rotate(user, "s1", "r1", "r2", now=first.created_at + 30, idle=TTL)
    listed = {record.session_id: record for record in await store.sessions(user)}
    assert set(listed) == {"s1", "s2"}
    assert listed["s1"].created_at == first.created_at
    assert listed["s1"].last_used_at == first.created_at + 30
    assert listed["s2"].last_used_at == listed["s2"].created_at
    assert (listed["s1"].client, listed["s1"].user_agent) == ("10.0.0.1", "agent/1")
    assert await store.revoke(user, "s1")
    assert not await store.revoke(user, "s1")
    assert not await store.revoke(user, "s3")  # another user's session is not found
    assert [record.session_id for record in await store.sessions(user)] == ["s2"]
    assert await store.is_active(other, "s3")
