"""The API's read side: the MongoDB client, and the objects the query routes use.

Reads must answer fast or fall back: Redis (the API's one client) has sub-second socket
timeouts (a miss is cheap), MongoDB a short server selection (its absence is a quick 503, not
a hung request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from ops.mongo import mongo_client, mongo_database
from ops.settings import Settings
from projections.aliases import LiveGenerations, MongoAliasRegistry
from projections.task_list.mongo import MongoTaskReadModel
from projections.task_list.redis import RedisPageCache
from projections.task_stats.redis import RedisTaskStats
from projections.write_positions import RedisWritePositions
from queries.tasks.reads import TaskQueries
from queries.users.mongo import MongoUserDirectory
from queries.users.ports import UserDirectory

MONGO_SELECTION_MS = 1500


@dataclass(frozen=True, slots=True)
class QuerySide:
    write_positions: RedisWritePositions
    mongo: AsyncMongoClient[dict[str, Any]] | None
    task_queries: TaskQueries | None  # None: no document store configured
    user_directory: UserDirectory | None


@asynccontextmanager
async def open_query_side(
    settings: Settings, redis: Redis, fallback_users: UserDirectory | None = None
) -> AsyncIterator[QuerySide]:
    """The read side on the process's Redis client (build it with ops.bootstrap.redis_client
    and the API's sub-second timeouts: a read that cannot reach Redis falls back to MongoDB)."""
    positions = RedisWritePositions(redis, settings.redis_prefix)
    mongo: AsyncMongoClient[dict[str, Any]] | None = None
    try:
        if not settings.mongo_url:
            yield QuerySide(positions, None, None, None)
            return
        mongo = mongo_client(settings, server_selection_ms=MONGO_SELECTION_MS)
        db = mongo_database(mongo)
        generations = LiveGenerations(MongoAliasRegistry(db))
        queries = TaskQueries(
            read_model=MongoTaskReadModel(db, generations),
            stats=RedisTaskStats(redis, settings.redis_prefix),
            cache=RedisPageCache(redis, settings.redis_prefix),
            positions=positions,
            generations=generations,
            timeout=settings.read_your_writes_timeout,
        )
        users = MongoUserDirectory(
            db,
            generations,
            positions,
            timeout=settings.read_your_writes_timeout,
            fallback=fallback_users,
        )
        yield QuerySide(positions, mongo, queries, users)
    finally:
        if mongo is not None:
            await mongo.close()
