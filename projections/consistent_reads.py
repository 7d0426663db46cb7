"""Reading a projection's checkpoint the way its rows are read: ``secondaryPreferred``, inside
the request's causally consistent session, so rows read next are at least that new."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from bson.codec_options import CodecOptions
from pymongo import ReadPreference
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from projections.checkpoints import CHECKPOINTS, checkpoint_id

CODECS: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)


def checkpoints_for_reads(db: AsyncDatabase[dict[str, Any]]) -> AsyncCollection[dict[str, Any]]:
    return db.with_options(
        codec_options=CODECS, read_preference=ReadPreference.SECONDARY_PREFERRED
    )[CHECKPOINTS]


async def read_checkpoint(
    checkpoints: AsyncCollection[dict[str, Any]],
    projection: str,
    generation: int,
    upstream: str,
    session: AsyncClientSession | None,
) -> int:
    doc = await checkpoints.find_one(
        {"_id": checkpoint_id(projection, generation, upstream)}, {"position": 1}, session=session
    )
    return 0 if doc is None else int(doc["position"])
