"""Users in MongoDB: ``users_v{N}_users`` ``{_id, email, display_name, created_at, version}``.

Only registration and renaming change a profile; other Identity events (password changes,
reset requests) are not its business and never reach it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pymongo import ReadPreference, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from projections.consistent_reads import CODECS
from projections.envelope import Envelope, collection_name
from projections.mongo_writes import duplicate_key_indexes
from projections.task_list.changes import to_millis
from projections.upstreams import IDENTITY, REGISTERED, RENAMED

NAME = "users"
VERSION = 1
TOPICS = (REGISTERED, RENAMED)


def users_collection(generation: int) -> str:
    return collection_name(NAME, generation, "users")


def _fields(envelope: Envelope) -> dict[str, Any]:
    event = envelope.event
    if envelope.topic == REGISTERED:
        return {
            "email": event.email,
            "display_name": event.display_name,
            "created_at": to_millis(envelope.timestamp),
        }
    return {"display_name": event.display_name}


@dataclass
class UsersProjector:
    db: AsyncDatabase[dict[str, Any]]
    generation: int
    name: str = NAME
    version: int = VERSION
    upstreams: Sequence[str] = (IDENTITY,)
    topics: Sequence[str] = TOPICS

    @property
    def collection(self) -> AsyncCollection[dict[str, Any]]:
        return self.db.with_options(codec_options=CODECS)[users_collection(self.generation)]

    async def start(self) -> None:
        return None  # reads are by _id only

    async def apply(self, batch: Sequence[Envelope]) -> None:
        """A profile takes a change only when it is newer than the stored version."""
        folded: dict[UUID, tuple[int, bool, dict[str, Any]]] = {}
        for envelope in batch:
            if envelope.topic not in TOPICS:
                continue
            _, created, fields = folded.get(envelope.originator_id, (0, False, {}))
            fields = {**fields, **_fields(envelope), "version": envelope.originator_version}
            created = created or envelope.topic == REGISTERED
            folded[envelope.originator_id] = (envelope.originator_version, created, fields)
        ops = [
            UpdateOne(
                {"_id": str(user), "version": {"$lt": version}}, {"$set": fields}, upsert=created
            )
            for user, (version, created, fields) in folded.items()
        ]
        if not ops:
            return
        try:
            await self.collection.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            duplicate_key_indexes(exc)


@dataclass
class UsersProjection:
    db: AsyncDatabase[dict[str, Any]]
    name: str = NAME
    upstreams: Sequence[str] = (IDENTITY,)
    topics: Sequence[str] = TOPICS

    def projector(self, generation: int) -> UsersProjector:
        return UsersProjector(self.db, generation)

    async def drop(self, generation: int) -> None:
        await self.db[users_collection(generation)].drop()


@dataclass(frozen=True, slots=True)
class UserRow:
    id: UUID
    email: str
    display_name: str
    created_at: datetime


def _row(doc: Mapping[str, Any]) -> UserRow:
    return UserRow(UUID(doc["_id"]), doc["email"], doc["display_name"], doc["created_at"])


async def find_user(
    db: AsyncDatabase[dict[str, Any]],
    generation: int,
    user_id: UUID,
    session: AsyncClientSession | None = None,
) -> UserRow | None:
    collection = db.with_options(
        codec_options=CODECS, read_preference=ReadPreference.SECONDARY_PREFERRED
    )[users_collection(generation)]
    doc = await collection.find_one({"_id": str(user_id)}, session=session)
    return None if doc is None else _row(doc)
