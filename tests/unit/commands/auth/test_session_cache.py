"""CachingSessionStore: "open" is trusted for a fraction of a second, revocations here at once."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID, uuid4

from commands.auth.memory import InMemorySessionStore
from commands.auth.session_cache import CachingSessionStore
from commands.auth.sessions import Session


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting(InMemorySessionStore):
    """The in-memory store, counting the is_active questions that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0
        self.gate: asyncio.Event | None = None

    async def is_active(self, user_id: UUID, session_id: str) -> bool:
        self.asked += 1
        answer = await super().is_active(user_id, session_id)
        if self.gate is not None:
            await self.gate.wait()
        return answer


async def _opened(store: Counting) -> Session:
    session = Session(uuid4(), "s1", "r1", 1, 0, 2**31)
    assert await store.open(session, 600)
    return session


async def test_an_open_session_is_asked_once_per_ttl() -> None:
    backing, clock = Counting(), Clock()
    cache = CachingSessionStore(backing, ttl=0.5, clock=clock)
    s = await _opened(backing)
    for _ in range(10):
        assert await cache.is_active(s.user_id, s.session_id)
    assert backing.asked == 1
    clock.now += 0.6
    assert await cache.is_active(s.user_id, s.session_id)
    assert backing.asked == 2


async def test_a_revocation_elsewhere_acts_once_the_ttl_is_over() -> None:
    backing, clock = Counting(), Clock()
    cache = CachingSessionStore(backing, ttl=0.5, clock=clock)
    s = await _opened(backing)
    assert await cache.is_active(s.user_id, s.session_id)
    await backing.revoke(s.user_id, s.session_id)  # another process, straight to the store
    clock.now += 0.51
    assert not await cache.is_active(s.user_id, s.session_id)


async def test_a_closed_session_is_never_remembered() -> None:
    backing, clock = Counting(), Clock()
    cache = CachingSessionStore(backing, clock=clock)
    user = uuid4()
    assert not await cache.is_active(user, "s1")
    assert not await cache.is_active(user, "s1")
    assert backing.asked == 2


async def test_a_revocation_here_acts_at_once() -> None:
    backing, clock = Counting(), Clock()
    cache = CachingSessionStore(backing, clock=clock)
    one, two = await _opened(backing), await _opened(backing)
    assert await cache.is_active(one.user_id, "s1")
    assert await cache.is_active(two.user_id, "s1")
    await cache.revoke(one.user_id, "s1")
    assert not await cache.is_active(one.user_id, "s1")
    await cache.revoke_all(two.user_id, before_version=2, ttl=600)
    assert not await cache.is_active(two.user_id, "s1")


async def test_a_spent_refresh_token_revokes_at_once() -> None:
    backing, clock = Counting(), Clock()
    cache = CachingSessionStore(backing, clock=clock)
    s = await _opened(backing)
    assert await cache.is_active(s.user_id, "s1")
    await cache.rotate(s.user_id, "s1", "r1", "r2", now=int(time.time()), idle=600)
    await cache.rotate(s.user_id, "s1", "r1", "r3", now=int(time.time()), idle=600)  # a reuse
    assert not await cache.is_active(s.user_id, "s1")


async def test_an_open_answer_racing_a_revocation_here_is_not_kept() -> None:
    backing, clock = Counting(), Clock()
    cache = CachingSessionStore(backing, clock=clock)
    s = await _opened(backing)
    backing.gate = asyncio.Event()
    asking = asyncio.create_task(cache.is_active(s.user_id, "s1"))
    await asyncio.sleep(0)  # the store has answered "open"; the answer is on its way back
    await cache.revoke(s.user_id, "s1")
    backing.gate.set()
    assert await asking  # answered before the revocation: it may say open
    backing.gate = None
    assert not await cache.is_active(s.user_id, "s1")
