"""UserDirectory read straight from the Identity event store: always current, no projection.

It takes any eventsourcing application over the Identity store (ops passes one), so the read
side reads the write side's events without importing the write side.
"""

from __future__ import annotations

from datetime import UTC
from uuid import UUID

from anyio.to_thread import run_sync
from eventsourcing.application import AggregateNotFoundError, Application

from domain.identity import User
from queries.users.ports import UserProfile


class EventStoreUserDirectory:
    def __init__(self, identity_log: Application[UUID]) -> None:
        self._log = identity_log

    async def profile(self, user_id: UUID) -> UserProfile | None:
        # The event store client blocks: read it off the event loop.
        return await run_sync(self._read, user_id)

    def _read(self, user_id: UUID) -> UserProfile | None:
        try:
            user: object = self._log.repository.get(user_id)
        except AggregateNotFoundError:
            return None
        # Ids of other aggregates in the same log (the email index) are not users.
        if not isinstance(user, User):
            return None
        # Milliseconds, as BSON stores it: the same user reads the same from either directory.
        created = user.created_on.astimezone(UTC)
        created = created.replace(microsecond=created.microsecond // 1000 * 1000)
        return UserProfile(user.id, user.email, user.display_name, created)
