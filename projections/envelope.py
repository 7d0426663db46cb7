"""What the runner hands a projector: one decoded event and where it sits in its log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

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
    """A named, versioned consumer of upstream logs. ``apply`` must be idempotent."""

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
    Redis ``{prefix}rm:{name}:v{N}:…``); the live generation is an alias the query side reads
    (Mongo collection ``projection_aliases``: ``{_id: name, generation: N}``).
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
