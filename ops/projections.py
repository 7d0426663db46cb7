"""The read side's composition: which projections exist, and the stores and clients they use.

To add a read model, append a factory to ``PROJECTIONS``: it gets the Settings and this event
loop's clients and returns a ``projections.envelope.Projection``. ``taskledger serve
projector`` runs every registered projection; ``taskledger projections …`` manages them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from commands.identity import Identity
from commands.tasks import Tasks
from ops.bootstrap import event_store_env, redis_client
from ops.mongo import mongo_client, mongo_database
from ops.read_models import READ_MODELS
from ops.relay import mail_relay
from ops.schema import require_schema
from ops.settings import Settings
from projections.aliases import MongoAliasRegistry
from projections.checkpoints import CheckpointsByProjection, MongoCheckpointStore
from projections.envelope import Projection
from projections.host import ProjectionHost
from projections.log import EventsourcingLog, watch
from projections.parked import MongoParkedEvents
from projections.rebuild import Rebuild
from projections.runner import Pacing

# The applications whose notification logs projections may follow.
UPSTREAMS: tuple[str, ...] = (Identity.name, Tasks.name)


@dataclass(frozen=True, slots=True)
class ReadClients:
    """This event loop's clients (PyMongo's async client must not cross loops)."""

    mongo: AsyncMongoClient[dict[str, Any]]
    db: AsyncDatabase[dict[str, Any]]
    redis: Redis | None


ProjectionFactory = Callable[[Settings, ReadClients], Projection]

# Every projection the projector service runs, in start order. Add yours here.
PROJECTIONS: list[ProjectionFactory] = [*READ_MODELS, mail_relay]


def all_projections(settings: Settings, clients: ReadClients) -> list[Projection]:
    return [factory(settings, clients) for factory in PROJECTIONS]


def pacing(settings: Settings) -> Pacing:
    return Pacing(batch_size=settings.projection_batch_size, poll_max=settings.projection_poll_max)


@dataclass(frozen=True, slots=True)
class ReadSide:
    """Everything the projection engine needs in one process, opened on one event loop."""

    settings: Settings
    clients: ReadClients
    logs: dict[str, EventsourcingLog]
    # Each projection's checkpoints where its read model lives: Redis-only ones in Redis.
    checkpoints: CheckpointsByProjection
    parked: MongoParkedEvents
    aliases: MongoAliasRegistry

    def projections(self) -> list[Projection]:
        made = all_projections(self.settings, self.clients)
        for projection in made:
            self.checkpoints.add(projection, projection.name)
        return made

    def host(self, projections: Sequence[Projection]) -> ProjectionHost:
        for projection in projections:
            self.checkpoints.add(projection, projection.name)
        return ProjectionHost(
            projections,
            self.logs,
            self.checkpoints,
            self.parked,
            self.aliases,
            pacing=pacing(self.settings),
        )

    def rebuild(self, **hooks: Any) -> Rebuild:
        return Rebuild(
            self.logs,
            self.checkpoints,
            self.parked,
            self.aliases,
            pacing=pacing(self.settings),
            grace=self.settings.projection_rebuild_grace,
            **hooks,
        )


def read_side_on(
    settings: Settings,
    mongo: AsyncMongoClient[dict[str, Any]],
    redis: Redis | None,
    logs: dict[str, EventsourcingLog],
) -> ReadSide:
    """The read side over clients and logs already open (the projector's, or the API's)."""
    db = mongo_database(mongo)
    return ReadSide(
        settings=settings,
        clients=ReadClients(mongo=mongo, db=db, redis=redis),
        logs=logs,
        checkpoints=CheckpointsByProjection(MongoCheckpointStore(db)),
        parked=MongoParkedEvents(db),
        aliases=MongoAliasRegistry(db),
    )


@asynccontextmanager
async def open_read_side(settings: Settings) -> AsyncIterator[ReadSide]:
    mongo = mongo_client(settings)
    redis = redis_client(settings) if settings.redis_url else None
    env = event_store_env(settings)
    logs: dict[str, EventsourcingLog] = {}
    try:
        await asyncio.to_thread(require_schema, settings)
        for name in UPSTREAMS:
            logs[name] = await asyncio.to_thread(EventsourcingLog.open, name, env)
        yield read_side_on(settings, mongo, redis, logs)
    finally:
        for upstream in logs.values():
            upstream.close()
        if redis is not None:
            await redis.aclose()
        await mongo.close()


async def run_projector(
    settings: Settings,
    stop: asyncio.Event,
    projections: Callable[[ReadSide], Sequence[Projection]] | None = None,
) -> None:
    """The projector process: every registered projection, tailed until ``stop`` is set."""
    async with open_read_side(settings) as side:
        chosen = side.projections() if projections is None else projections(side)
        watcher = asyncio.create_task(watch(list(side.logs.values())), name="log-watch")
        try:
            await side.host(chosen).run(stop)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
