"""A session store that remembers, for a fraction of a second, which sessions it saw open.

Every Bearer request asks whether its session is still open; asked of Redis, that is a round
trip per command. This process instead trusts an answer of "open" for ``ttl`` seconds (0.5 by
default), so a revocation made by another process acts here within that time, and one made
through this store at once. "Closed" is never remembered: a closed session stays closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from uuid import UUID

from commands.auth.sessions import Rotation, Session, SessionRecord, SessionStore

# Well under the 1 s within which a revocation must act on every API process.
OPEN_FOR = 0.5
REMEMBERED = 100_000


class CachingSessionStore:
    """``SessionStore`` over another one, answering ``is_active`` from recent answers."""

    def __init__(
        self,
        store: SessionStore,
        *,
        ttl: float = OPEN_FOR,
        clock: Callable[[], float] = time.monotonic,
        remembered: int = REMEMBERED,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._remembered = remembered
        # (user, session) -> until when "open" is trusted
        self._open: dict[tuple[UUID, str], float] = {}
        # Bumped by every revocation made here: an answer of "open" asked for before one
        # landed may predate it, so it is not remembered.
        self._revocations = 0

    async def open(self, session: Session, idle: int) -> bool:
        return await self._store.open(session, idle)

    async def rotate(
        self, user_id: UUID, session_id: str, spent: str, replacement: str, *, now: int, idle: int
    ) -> tuple[Rotation, int]:
        outcome = await self._store.rotate(
            user_id, session_id, spent, replacement, now=now, idle=idle
        )
        if outcome[0] is not Rotation.ROTATED:
            self._revoked(user_id, session_id)
        return outcome

    async def is_active(self, user_id: UUID, session_id: str) -> bool:
        key = (user_id, session_id)
        until = self._open.get(key)
        if until is not None and until > self._clock():
            return True
        asked, revocations = self._clock(), self._revocations
        active = await self._store.is_active(user_id, session_id)
        if active and revocations == self._revocations:
            if len(self._open) >= self._remembered:
                self._open.clear()
            self._open[key] = asked + self._ttl
        return active

    async def revoke(self, user_id: UUID, session_id: str) -> bool:
        # Before and after: an "open" asked for while the revocation is on its way is not kept.
        self._revoked(user_id, session_id)
        ended = await self._store.revoke(user_id, session_id)
        self._revoked(user_id, session_id)
        return ended

    async def revoke_all(self, user_id: UUID, *, before_version: int, ttl: int) -> None:
        self._revoked(user_id)
        await self._store.revoke_all(user_id, before_version=before_version, ttl=ttl)
        self._revoked(user_id)

    async def sessions(self, user_id: UUID) -> Sequence[SessionRecord]:
        return await self._store.sessions(user_id)

    def _revoked(self, user_id: UUID, session_id: str | None = None) -> None:
        self._revocations += 1
        if session_id is not None:
            self._open.pop((user_id, session_id), None)
            return
        for key in [key for key in self._open if key[0] == user_id]:
            del self._open[key]
