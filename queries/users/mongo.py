"""UserDirectory over the ``users`` projection in MongoDB, read-your-writes included.

A profile the projection does not hold yet (a registration it has not reached within the wait),
or any profile while MongoDB does not answer, is asked of ``fallback``, the event store, so a
valid token never meets a 404 (or a 503) for its own user.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from domain.errors import Unavailable
from projections.consistent_reads import checkpoints_for_reads, read_checkpoint
from projections.upstreams import IDENTITY
from projections.users.mongo import NAME, find_user
from queries.tasks.ports import Generations, WritePositions
from queries.tasks.reads import wait_until
from queries.users.ports import UserDirectory, UserProfile

UPSTREAM = IDENTITY


class MongoUserDirectory:
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        generations: Generations,
        positions: WritePositions,
        *,
        timeout: float,
        fallback: UserDirectory | None = None,
    ) -> None:
        self._db = db
        self._generations = generations
        self._positions = positions
        self._timeout = timeout
        self._fallback = fallback
        self._checkpoints = checkpoints_for_reads(db)

    async def profile(self, user_id: UUID) -> UserProfile | None:
        own = (await self._positions.last(user_id)).get(UPSTREAM, 0)
        try:
            generation = await self._generations.of(NAME)
            async with self._db.client.start_session(causal_consistency=True) as session:
                reached = await wait_until(
                    lambda: read_checkpoint(self._checkpoints, NAME, generation, UPSTREAM, session),
                    own,
                    self._timeout,
                )
                if reached < own and self._fallback is not None:
                    # The projection is behind the user's own last write (a rename, say):
                    # the event store is not.
                    return await self._fallback.profile(user_id)
                row = await find_user(self._db, generation, user_id, session)
        except ConnectionFailure as exc:
            if self._fallback is None:
                raise Unavailable("document store") from exc
            # The event store knows every user; a profile is worth more than a 503.
            return await self._fallback.profile(user_id)
        if row is None:
            return None if self._fallback is None else await self._fallback.profile(user_id)
        return UserProfile(row.id, row.email, row.display_name, row.created_at)
