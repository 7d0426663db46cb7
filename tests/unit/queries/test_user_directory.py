"""The event-store UserDirectory, over the library's in-memory store."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import uuid4

from commands.identity import Identity
from domain.identity import EmailIndex
from domain.meta import meta
from queries.users.event_store import EventStoreUserDirectory


async def test_a_registered_user_has_a_profile_and_nothing_else_does() -> None:
    identity = Identity()
    written = identity.register(
        email="Ann@Example.com",
        display_name="Ann",
        password_hash="$argon2id$fake",
        meta=meta(None, "test"),
    )
    directory = EventStoreUserDirectory(identity)
    profile = await directory.profile(written.id)
    assert profile is not None
    assert (profile.id, profile.email, profile.display_name) == (
        written.id,
        "ann@example.com",
        "Ann",
    )
    assert profile.created_at.utcoffset() == timedelta(0)
    # Milliseconds, like the MongoDB directory's: one user reads the same from either.
    assert profile.created_at.microsecond % 1000 == 0
    created_on: datetime = identity.repository.get(written.id).created_on
    assert timedelta(0) <= created_on - profile.created_at < timedelta(milliseconds=1)
    assert await directory.profile(uuid4()) is None
    # The email index lives in the same log, but it is not a user.
    assert await directory.profile(EmailIndex.create_id("ann@example.com")) is None
