"""The one MongoDB client factory: the projector and the API differ only in how long an
operation may wait for a server."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from ops.settings import InvalidSetting, Settings


def mongo_client(
    settings: Settings, *, server_selection_ms: int | None = None
) -> AsyncMongoClient[dict[str, Any]]:
    """This event loop's client. ``server_selection_ms``: how long an operation waits for a
    usable server; None leaves it to the URL (or PyMongo's 30 s), which suits the projector,
    whose runner retries; the API passes a short one, so an absent MongoDB is a quick 503."""
    if not settings.mongo_url:
        raise InvalidSetting("invalid setting TASKLEDGER_MONGO_URL: not set")
    options: dict[str, Any] = {}
    if server_selection_ms is not None:
        options["serverSelectionTimeoutMS"] = server_selection_ms
    # tz_aware: checkpoints, parked events and aliases hold UTC instants.
    return AsyncMongoClient(settings.mongo_url, tz_aware=True, **options)


def mongo_database(client: AsyncMongoClient[dict[str, Any]]) -> AsyncDatabase[dict[str, Any]]:
    """The database named in the URL's path."""
    return client.get_default_database("taskledger")
