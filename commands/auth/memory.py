"""In-memory adapters: first-class, for unit tests and single-process use. Not shared across
processes, and lost on restart."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from uuid import UUID

from commands.auth.rate_limits import Limit, Slowdown
from commands.auth.sessions import Rotation, Session, SessionRecord
from domain.errors import RateLimited

Clock = Callable[[], float]


class InMemorySessionStore:
    # Each method runs without awaiting, so on one event loop every transition is atomic.
    # Expiry runs on the store's clock; ``now`` and the sessions' ends are the callers' (Unix).

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        # (user, session) -> (the session with its current refresh id, last used, expires)
        self._sessions: dict[tuple[UUID, str], tuple[Session, int, float]] = {}
        self._floors: dict[UUID, tuple[int, float]] = {}

    def _live(self, user_id: UUID, session_id: str) -> tuple[Session, int, float] | None:
        entry = self._sessions.get((user_id, session_id))
        if entry is None or entry[2] <= self._clock():
            self._sessions.pop((user_id, session_id), None)
            return None
        return entry

    async def open(self, session: Session, idle: int) -> bool:
        floor = self._floors.get(session.user_id)
        if floor is not None and floor[1] > self._clock() and session.user_version < floor[0]:
            return False
        ttl = min(idle, session.ends_at - session.created_at)
        key = (session.user_id, session.session_id)
        self._sessions[key] = (session, session.created_at, self._clock() + ttl)
        return True

    async def rotate(
        self, user_id: UUID, session_id: str, spent: str, replacement: str, *, now: int, idle: int
    ) -> tuple[Rotation, int]:
        entry = self._live(user_id, session_id)
        if entry is None:
            return Rotation.UNKNOWN, 0
        session = entry[0]
        ttl = min(idle, session.ends_at - now)
        if session.refresh_id != spent or ttl <= 0:
            del self._sessions[(user_id, session_id)]
            return (Rotation.REUSED if session.refresh_id != spent else Rotation.UNKNOWN), 0
        renewed = dataclasses.replace(session, refresh_id=replacement)
        self._sessions[(user_id, session_id)] = (renewed, now, self._clock() + ttl)
        return Rotation.ROTATED, session.ends_at

    async def is_active(self, user_id: UUID, session_id: str) -> bool:
        return self._live(user_id, session_id) is not None

    async def revoke(self, user_id: UUID, session_id: str) -> bool:
        live = self._live(user_id, session_id) is not None
        self._sessions.pop((user_id, session_id), None)
        return live

    async def revoke_all(self, user_id: UUID, *, before_version: int, ttl: int) -> None:
        for key in [key for key in self._sessions if key[0] == user_id]:
            del self._sessions[key]
        floor = self._floors.get(user_id)
        if floor is None or floor[1] <= self._clock() or floor[0] < before_version:
            self._floors[user_id] = (before_version, self._clock() + ttl)

    async def sessions(self, user_id: UUID) -> Sequence[SessionRecord]:
        live = [self._live(*key) for key in list(self._sessions) if key[0] == user_id]
        return [
            SessionRecord(
                session.session_id, session.created_at, used, session.client, session.user_agent
            )
            for session, used, _ in filter(None, live)
        ]


class InMemoryRateLimiter:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        # key -> (attempts, window end)
        self._counts: dict[str, tuple[int, float]] = {}
        # key -> (attempts, last attempt, forgotten at)
        self._slowdowns: dict[str, tuple[int, float, float]] = {}

    def _current(self, key: str) -> tuple[int, float] | None:
        entry = self._counts.get(key)
        if entry is not None and entry[1] <= self._clock():
            del self._counts[key]
            return None
        return entry

    def _retry_after(self, ends: float) -> int:
        return max(1, math.ceil(ends - self._clock()))

    async def check(self, limits: Sequence[Limit]) -> None:
        waits = [
            self._retry_after(entry[1])
            for limit in limits
            if (entry := self._current(limit.key)) is not None and entry[0] >= limit.limit
        ]
        if waits:
            raise RateLimited(max(waits))

    async def hit(self, limits: Sequence[Limit]) -> None:
        waits = []
        for limit in limits:
            count, ends = self._current(limit.key) or (0, self._clock() + limit.window)
            self._counts[limit.key] = (count + 1, ends)
            if count + 1 > limit.limit:
                waits.append(self._retry_after(ends))
        if waits:
            raise RateLimited(max(waits))

    async def slow(self, slowdown: Slowdown) -> None:
        now = self._clock()
        attempts, last, forgotten = self._slowdowns.get(slowdown.key, (0, now, now))
        if forgotten <= now:
            attempts = 0
        ready = last + slowdown.delay(attempts)
        if attempts and now < ready:
            raise RateLimited(self._retry_after(ready))
        self._slowdowns[slowdown.key] = (attempts + 1, now, now + slowdown.ttl)

    async def clear(self, limit: Limit | Slowdown) -> None:
        self._counts.pop(limit.key, None)
        self._slowdowns.pop(limit.key, None)

    async def refund(self, limit: Limit | Slowdown) -> None:
        slowed = self._slowdowns.get(limit.key)
        if slowed is not None and slowed[0] > 0:
            self._slowdowns[limit.key] = (slowed[0] - 1, *slowed[1:])
        entry = self._current(limit.key)
        if entry is not None and entry[0] > 0:
            self._counts[limit.key] = (entry[0] - 1, entry[1])
