"""The users projection and MongoUserDirectory on SecantusDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

from pymongo import AsyncMongoClient

from projections.checkpoints import MongoCheckpointStore
from projections.envelope import Envelope
from projections.users.mongo import UsersProjection, find_user
from projections.write_positions import InMemoryWritePositions
from queries.users.mongo import MongoUserDirectory
from queries.users.ports import UserProfile

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def event(user: UUID, position: int, version: int, kind: str, **attrs: Any) -> Envelope:
    return Envelope(
        "Identity",
        position,
        f"domain.identity:User.{kind}",
        user,
        version,
        T0 + timedelta(seconds=position),
        SimpleNamespace(**attrs),
        None,
    )


class Generation1:
    async def of(self, name: str) -> int:
        return 1


class Remembered:
    def __init__(self) -> None:
        self.asked: list[UUID] = []

    async def profile(self, user_id: UUID) -> UserProfile | None:
        self.asked.append(user_id)
        return UserProfile(user_id, "from@store", "Store", T0)


async def test_profiles_follow_registration_and_renames_and_ignore_replays(
    mongo_url: str,
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client.get_default_database()
    ada, bob = uuid4(), uuid4()
    log = [
        event(ada, 1, 1, "Registered", email="ada@example.com", display_name="Ada"),
        event(bob, 2, 1, "Registered", email="bob@example.com", display_name="Bob"),
        event(ada, 3, 2, "PasswordResetRequested"),
        event(ada, 4, 3, "Renamed", display_name="Ada L."),
    ]
    projector = UsersProjection(db).projector(1)
    try:
        await projector.start()
        await projector.apply(log[:2])
        await projector.apply(log[2:])
        await projector.apply(log)  # a replay of everything
        await projector.apply(log[:1])  # a stale writer, late
        row = await find_user(db, 1, ada)
        assert row is not None
        assert (row.email, row.display_name) == ("ada@example.com", "Ada L.")
        assert row.created_at == T0.replace(microsecond=123000) + timedelta(seconds=1)

        positions = InMemoryWritePositions()
        fallback = Remembered()
        directory = MongoUserDirectory(
            db, Generation1(), positions, timeout=0.05, fallback=fallback
        )
        profile = await directory.profile(bob)
        assert profile == UserProfile(
            bob, "bob@example.com", "Bob", T0.replace(microsecond=123000) + timedelta(seconds=2)
        )
        assert fallback.asked == []
        stranger = uuid4()  # registered, but the projection has not got there yet
        assert (await directory.profile(stranger)) == UserProfile(
            stranger, "from@store", "Store", T0
        )
        await positions.wrote(ada, "Identity", 9)  # a rename the projector has not applied
        await MongoCheckpointStore(db).advance("users", 1, "Identity", 4)
        profile = await directory.profile(ada)  # waits at most the timeout...
        # ...then asks the event store, which has the rename the projection lacks.
        assert profile == UserProfile(ada, "from@store", "Store", T0)
        assert fallback.asked[-1] == ada
        without_fallback = MongoUserDirectory(db, Generation1(), positions, timeout=0.01)
        profile = await without_fallback.profile(ada)
        assert profile is not None
        assert profile.display_name == "Ada L."  # the best the projection has
    finally:
        await client.drop_database(db.name)
        await client.close()
