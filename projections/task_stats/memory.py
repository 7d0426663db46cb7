"""Counters in memory: the task list's own counts of one generation, for unit tests."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from projections.task_list.memory import InMemoryTaskCollection
from projections.task_list.model import TaskCounts


class InMemoryTaskStats:
    def __init__(self) -> None:
        self.tables: dict[int, InMemoryTaskCollection] = {}
        self.down = False  # as when Redis does not answer
        self.checkpoints: dict[tuple[int, str], int] = {}

    async def checkpoint(self, generation: int, upstream: str) -> int | None:
        return None if self.down else self.checkpoints.get((generation, upstream), 0)

    async def counts(self, generation: int, owner_id: UUID, now: datetime) -> TaskCounts | None:
        table = self.tables.get(generation)
        if self.down:
            return None
        return TaskCounts() if table is None else await table.counts(owner_id, now)
