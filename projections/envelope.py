"""What the runner hands a projector: one decoded event and where it sits in its log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from redis.asyncio import Redis

from domain.meta import Meta


@dataclass(frozen=True, slots=True)
class Envelope:
    application: str  # upstream application name: "Identity" or "Tasks"
    position: int  # notification id in that application's log
    topic: str  # e.g. "domain.tasks:Task.Created"
    originator_id: UUID
    originator_version: int
    timestamp: datetime
    event: Any  # the decoded domain event object
    meta: Meta | None

    @property
    def event_type(self) -> str:
        """The class name after the aggregate, e.g. "Created" for "domain.tasks:Task.Created"."""
        return self.topic.rsplit(".", 1)[-1]


class Projector(Protocol):
    """A named, versioned consumer of upstream logs. ``apply`` must be idempotent.

    How the runner (projections/runner.py) drives it:

    - ``start`` once per runner start, before any ``apply``.
    - ``apply`` gets events of ONE upstream, in log order, only of ``topics`` (all when empty).
      The runner never calls ``apply`` concurrently on one projector instance, even when it
      follows several upstreams at once.
    - After ``apply`` returns, the runner advances the checkpoint; a crash in between means
      the same events are applied again, so stale writes must be ignored (version guards).
    - If ``apply`` raises, the runner retries the batch one event at a time; an event that
      still raises is parked (``projection_parked``) and skipped. Errors that mean "a server
      is unreachable or cannot take writes now" (see runner.is_transient: connection
      failures and timeouts, failovers, read-only or out-of-memory Redis, write concern
      errors) are never parked: the runner backs off and re-applies from its last checkpoint.
      Nor are more than ``Pacing.park_breaker`` events in a row failing with one error type.
    """

    name: str
    version: int
    upstreams: Sequence[str]  # the applications whose logs it reads
    topics: Sequence[str]  # the event topics it handles (others are skipped by the runner)

    async def start(self) -> None:
        """Prepare the read model (indexes, scripts). Safe to call on every start."""
        ...

    async def apply(self, batch: Sequence[Envelope]) -> None:
        """Apply a batch; re-applying any batch, in any crash pattern, changes nothing."""
        ...


class Projection(Protocol):
    """A named read model that can be built in numbered generations (blue/green rebuilds).

    Generation N writes only to its own collections/keys (e.g. Mongo ``{name}_v{N}_tasks``,
    Redis ``{prefix}rm:{name}:v{N}:…``; ``collection_name`` and ``redis_namespace`` below spell
    them); the live generation is an alias the query side reads (Mongo collection
    ``projection_aliases``: ``{_id: name, generation: N, …}``, read it through
    projections.aliases.LiveGenerations). Generation 1 is live until the first rebuild.

    ``projector(N)`` must not do I/O (``start`` does). ``drop(N)`` must be idempotent: it may
    run twice, or for a generation that never wrote anything.
    """

    name: str
    upstreams: Sequence[str]
    topics: Sequence[str]

    def projector(self, generation: int) -> Projector:
        """The projector that writes generation ``generation``."""
        ...

    async def drop(self, generation: int) -> None:
        """Remove every collection and key of a generation that is no longer live."""
        ...


def collection_name(projection: str, generation: int, suffix: str) -> str:
    """The Mongo collection of one generation of a projection, e.g. ``task_list_v2_tasks``."""
    return f"{projection}_v{generation}_{suffix}"


def redis_namespace(prefix: str, projection: str, generation: int) -> str:
    """The Redis key prefix of one generation of a projection, under Settings.redis_prefix."""
    return f"{prefix}rm:{projection}:v{generation}:"


async def drop_namespace(redis: Redis, namespace: str) -> None:
    """Delete every key under ``namespace`` (e.g. one ``redis_namespace``), a thousand at a time.

    SCAN, not KEYS, so a large namespace never blocks the server; deleting as it goes keeps
    memory flat, and SCAN still returns every key present from its start to its end."""
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{namespace}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await redis.delete(*batch)
            batch.clear()
    if batch:
        await redis.delete(*batch)
