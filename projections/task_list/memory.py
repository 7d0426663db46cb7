"""The task list in memory: the same contract as MongoDB, for unit tests and as a reference."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

from projections.task_list.changes import TaskChange
from projections.task_list.model import (
    STATUSES,
    After,
    CacheToken,
    TaskCounts,
    TaskPage,
    TaskQuery,
    TaskRow,
    document_row,
    matches,
)


class InMemoryTaskCollection:
    """Documents shaped exactly like MongoDB's, so whole stores compare equal."""

    def __init__(self, generation: int = 1) -> None:
        self.generation = generation
        self._docs: dict[str, dict[str, Any]] = {}

    async def prepare(self) -> None:
        return None

    async def write(self, changes: Sequence[TaskChange]) -> None:
        for change in changes:
            key = str(change.task_id)
            doc = self._docs.get(key)
            if doc is None:
                if change.created:
                    self._docs[key] = {"_id": key, **copy.deepcopy(change.fields)}
            elif doc["version"] < change.version:
                doc.update(copy.deepcopy(change.fields))

    async def owners(self, task_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        docs = (self._docs.get(str(t)) for t in task_ids)
        return {UUID(d["_id"]): UUID(d["owner_id"]) for d in docs if d is not None}

    async def drop(self) -> None:
        self._docs.clear()

    async def documents(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(self._docs[k]) for k in sorted(self._docs)]

    def _live(self, owner_id: UUID) -> list[TaskRow]:
        owner = str(owner_id)
        docs = self._docs.values()
        return [document_row(d) for d in docs if d["owner_id"] == owner and not d["deleted"]]

    async def get(self, owner_id: UUID, task_id: UUID) -> TaskRow | None:
        doc = self._docs.get(str(task_id))
        if doc is None or doc["deleted"] or doc["owner_id"] != str(owner_id):
            return None
        return document_row(doc)

    async def page(self, owner_id: UUID, query: TaskQuery) -> TaskPage:
        sort = query.sort

        def key(row: TaskRow) -> tuple[datetime | int, str]:
            return sort.value(row), str(row.id)

        rows = sorted(
            (r for r in self._live(owner_id) if matches(r, query.filter)),
            key=key,
            reverse=sort.descending,
        )
        if query.after is not None:
            mark = (query.after.value, str(query.after.task_id))
            rows = [r for r in rows if (key(r) < mark if sort.descending else key(r) > mark)]
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        last = rows[-1] if more else None
        return TaskPage(tuple(rows), None if last is None else After(sort.value(last), last.id))

    async def counts(self, owner_id: UUID, now: datetime) -> TaskCounts:
        rows = self._live(owner_id)
        by_status = {s: sum(1 for r in rows if r.status == s) for s in STATUSES}
        overdue = sum(
            1 for r in rows if r.status != "done" and r.due_date is not None and r.due_date < now
        )
        return TaskCounts(**by_status, overdue=overdue)


class InMemoryTaskReader:
    def __init__(self, tasks: InMemoryTaskCollection, checkpoints: Mapping[str, int]) -> None:
        self._tasks = tasks
        self._checkpoints = checkpoints
        self.generation = tasks.generation

    async def checkpoint(self, upstream: str) -> int:
        return self._checkpoints.get(upstream, 0)

    async def get(self, owner_id: UUID, task_id: UUID) -> TaskRow | None:
        return await self._tasks.get(owner_id, task_id)

    async def page(self, owner_id: UUID, query: TaskQuery) -> TaskPage:
        return await self._tasks.page(owner_id, query)

    async def counts(self, owner_id: UUID, now: datetime) -> TaskCounts:
        return await self._tasks.counts(owner_id, now)


class InMemoryTaskReadModel:
    """A collection plus the checkpoints a test sets by hand."""

    def __init__(self, tasks: InMemoryTaskCollection | None = None) -> None:
        self.tasks = tasks or InMemoryTaskCollection()
        self.checkpoints: dict[str, int] = {}

    async def generation(self) -> int:
        return self.tasks.generation

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[InMemoryTaskReader]:
        yield InMemoryTaskReader(self.tasks, self.checkpoints)


class InMemoryPageCache:
    """Both sides of the page cache: the projector's invalidation and the readers' pages."""

    def __init__(self) -> None:
        self.versions: dict[tuple[int, UUID], int] = {}
        self.epochs: dict[int, int] = {}
        self.pages: dict[tuple[CacheToken, UUID, str], bytes] = {}

    def invalidator(self, generation: int) -> InMemoryCacheInvalidator:
        return InMemoryCacheInvalidator(self, generation)

    async def token(self, generation: int, owner_id: UUID) -> CacheToken | None:
        return CacheToken(
            generation, self.epochs.get(generation, 0), self.versions.get((generation, owner_id), 0)
        )

    async def get(self, token: CacheToken, owner_id: UUID, query: str) -> bytes | None:
        return self.pages.get((token, owner_id, query))

    async def put(self, token: CacheToken, owner_id: UUID, query: str, page: bytes) -> None:
        self.pages[(token, owner_id, query)] = page


class InMemoryCacheInvalidator:
    def __init__(self, cache: InMemoryPageCache, generation: int) -> None:
        self._cache = cache
        self._generation = generation

    async def start(self) -> None:
        epochs = self._cache.epochs
        epochs[self._generation] = epochs.get(self._generation, 0) + 1

    async def invalidate(self, owners: Mapping[UUID, int]) -> None:
        for owner, position in owners.items():
            key = (self._generation, owner)
            self._cache.versions[key] = max(self._cache.versions.get(key, 0), position)

    async def drop(self) -> None:
        for key in [k for k in self._cache.versions if k[0] == self._generation]:
            del self._cache.versions[key]
