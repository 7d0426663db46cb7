"""Version-guarded bulk writes to MongoDB: which of their errors only mean "already newer"."""

from __future__ import annotations

from pymongo.errors import BulkWriteError

DUPLICATE_KEY = 11000


def duplicate_key_indexes(exc: BulkWriteError) -> list[int]:
    """The indexes of the writes that hit an existing _id; anything else is re-raised.

    An upsert whose version guard fails collides with the newer row on _id: a stale write that
    changes nothing, so callers drop it (or retry it as an update, for an insert)."""
    details = exc.details
    errors = details.get("writeErrors", [])
    if details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise exc
    return [int(e["index"]) for e in errors]
