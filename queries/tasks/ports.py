"""What the task queries need, as roles; adapters live in projections/ (MongoDB, Redis, memory).

The value types (rows, filters, pages) belong to the read model and come from
projections.task_list.model.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol
from uuid import UUID

from projections.task_list.model import CacheToken, TaskCounts, TaskPage, TaskQuery, TaskRow


class TaskReader(Protocol):
    """One request's consistent view of the task list: one generation, reads in order."""

    generation: int

    async def checkpoint(self, upstream: str) -> int:
        """How far this generation has applied ``upstream``'s log."""
        ...

    async def get(self, owner_id: UUID, task_id: UUID) -> TaskRow | None: ...

    async def page(self, owner_id: UUID, query: TaskQuery) -> TaskPage: ...

    async def counts(self, owner_id: UUID, now: datetime) -> TaskCounts: ...


class TaskReadModel(Protocol):
    async def generation(self) -> int:
        """The live generation (raises domain.errors.Unavailable like ``reading``)."""
        ...

    def reading(self) -> AbstractAsyncContextManager[TaskReader]:
        """Raises domain.errors.Unavailable when the document store does not answer."""
        ...


class TaskStats(Protocol):
    async def counts(self, generation: int, owner_id: UUID, now: datetime) -> TaskCounts | None:
        """The counters, or None when they cannot answer now (the caller falls back)."""
        ...

    async def checkpoint(self, generation: int, upstream: str) -> int | None:
        """How far the counters have applied ``upstream`` (their checkpoint lives with them),
        or None when they cannot answer now."""
        ...


class PageCache(Protocol):
    """Cached list pages; every method degrades to a miss (None) rather than failing."""

    async def token(self, generation: int, owner_id: UUID) -> CacheToken | None: ...

    async def get(self, token: CacheToken, owner_id: UUID, query: str) -> bytes | None: ...

    async def put(self, token: CacheToken, owner_id: UUID, query: str, page: bytes) -> None: ...


class WritePositions(Protocol):
    async def last(self, user_id: UUID) -> dict[str, int]:
        """The log position of the user's last write, per application ({} when unknown)."""
        ...


class Generations(Protocol):
    async def of(self, name: str) -> int:
        """The live generation of a projection."""
        ...
