"""The read models the projector runs (registered in ops/projections.py PROJECTIONS)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ops.settings import InvalidSetting, Settings
from projections.task_list.mongo import MongoTaskCollection
from projections.task_list.projection import CacheInvalidator, NoCache, TaskListProjection
from projections.task_list.redis import RedisCacheInvalidator
from projections.task_stats.redis import TaskStatsProjection
from projections.users.mongo import UsersProjection

if TYPE_CHECKING:
    from ops.projections import ProjectionFactory, ReadClients


def task_list(settings: Settings, clients: ReadClients) -> TaskListProjection:
    """Rows in MongoDB; list pages cached in Redis are invalidated per user as rows change."""
    redis = clients.redis

    def cache(generation: int) -> CacheInvalidator:
        if redis is None:
            return NoCache()
        return RedisCacheInvalidator(redis, settings.redis_prefix, generation)

    return TaskListProjection(
        table=lambda generation: MongoTaskCollection(clients.db, generation), cache=cache
    )


def task_stats(settings: Settings, clients: ReadClients) -> TaskStatsProjection:
    if clients.redis is None:
        raise InvalidSetting("invalid setting TASKLEDGER_REDIS_URL: not set; task_stats needs it")
    return TaskStatsProjection(clients.redis, settings.redis_prefix)


def users(settings: Settings, clients: ReadClients) -> UsersProjection:
    return UsersProjection(clients.db)


READ_MODELS: list[ProjectionFactory] = [task_list, task_stats, users]
