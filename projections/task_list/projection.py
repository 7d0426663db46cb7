"""The ``task_list`` projection: every task of every user, as rows to filter, sort and page."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID

from projections.envelope import Envelope
from projections.task_list.changes import TOPICS, TaskChange, fold, owners_of
from projections.task_list.model import NAME, TaskCounts, TaskPage, TaskQuery, TaskRow
from projections.upstreams import TASKS

VERSION = 1
OWNERS_REMEMBERED = 100_000


class TaskTable(Protocol):
    """Where one generation's rows live (MongoDB, or memory)."""

    async def prepare(self) -> None: ...

    async def write(self, changes: Sequence[TaskChange]) -> None:
        """Apply changes guarded by version: a stale one changes nothing."""
        ...

    async def owners(self, task_ids: Sequence[UUID]) -> dict[UUID, UUID]: ...

    async def drop(self) -> None: ...

    async def get(self, owner_id: UUID, task_id: UUID) -> TaskRow | None: ...

    async def page(self, owner_id: UUID, query: TaskQuery) -> TaskPage: ...

    async def counts(self, owner_id: UUID, now: datetime) -> TaskCounts: ...


class CacheInvalidator(Protocol):
    async def start(self) -> None: ...

    async def invalidate(self, owners: Mapping[UUID, int]) -> None:
        """Users whose tasks changed, with the log position of their last change."""
        ...

    async def drop(self) -> None: ...


class NoCache:
    async def start(self) -> None:
        return None

    async def invalidate(self, owners: Mapping[UUID, int]) -> None:
        return None

    async def drop(self) -> None:
        return None


@dataclass
class TaskListProjector:
    table: TaskTable
    cache: CacheInvalidator
    name: str = NAME
    version: int = VERSION
    upstreams: Sequence[str] = (TASKS,)
    topics: Sequence[str] = TOPICS
    # A task's owner never changes: remembered, so most batches need no lookup.
    _owners: OrderedDict[UUID, UUID] = field(default_factory=OrderedDict)

    async def start(self) -> None:
        await self.table.prepare()
        await self.cache.start()

    async def apply(self, batch: Sequence[Envelope]) -> None:
        """Rows first, then the cache: a page is never filed under a version its rows lack."""
        changes = fold(batch)
        if not changes:
            return
        await self.table.write(changes)
        await self.cache.invalidate(await self._positions_by_owner(changes))

    async def _positions_by_owner(self, changes: Sequence[TaskChange]) -> dict[UUID, int]:
        self._remember(owners_of(changes))
        unknown = [c.task_id for c in changes if c.task_id not in self._owners]
        if unknown:
            self._remember(await self.table.owners(unknown))
        positions: dict[UUID, int] = {}
        for change in changes:
            owner = self._owners.get(change.task_id)
            if owner is not None:
                positions[owner] = max(positions.get(owner, 0), change.position)
        return positions

    def _remember(self, owners: Mapping[UUID, UUID]) -> None:
        for task_id, owner in owners.items():
            self._owners[task_id] = owner
            self._owners.move_to_end(task_id)
        while len(self._owners) > OWNERS_REMEMBERED:
            self._owners.popitem(last=False)


@dataclass
class TaskListProjection:
    """Generation N: its own table and its own cache keys, built by the factories given."""

    table: Callable[[int], TaskTable]
    cache: Callable[[int], CacheInvalidator] = lambda generation: NoCache()
    name: str = NAME
    upstreams: Sequence[str] = (TASKS,)
    topics: Sequence[str] = TOPICS

    def projector(self, generation: int) -> TaskListProjector:
        return TaskListProjector(self.table(generation), self.cache(generation))

    async def drop(self, generation: int) -> None:
        await self.table(generation).drop()
        await self.cache(generation).drop()
