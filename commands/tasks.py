"""The Tasks application: every change to a task is an event, made only by its owner."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any, Required, TypedDict, Unpack
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from commands.metrics import counted, counting
from commands.write_application import WriteApplication
from commands.written import Written
from domain.errors import ConcurrentWrite, TaskNotFound, VersionMismatch
from domain.meta import Meta
from domain.tasks import Priority, Status, Task

# A write without If-Match that loses a race is re-read and re-applied this many times
# before the caller hears 409: the client asked for "my change", not "my change on version N".
RACE_RETRIES = 5


class NewTask(TypedDict, total=False):
    """What a new task is made of; the owner, the title and the meta are required."""

    owner_id: Required[UUID]
    title: Required[str]
    description: str
    status: Status
    priority: Priority
    due_date: datetime | None
    labels: Iterable[str]
    meta: Required[Meta]


class Tasks(WriteApplication):
    name = "Tasks"

    @counted("create_task")
    def create_task(self, **fields: Unpack[NewTask]) -> Written:
        """Anyone signed in may create a task; they own it."""
        task = Task.create(**fields)
        return Written.of(task.id, task.version, self.commits.save(task))

    async def create_task_async(self, **fields: Unpack[NewTask]) -> Written:
        """As create_task, awaited: a create reads nothing, so it needs no thread of its own."""
        with counting("create_task"):
            task = Task.create(**fields)
            return Written.of(task.id, task.version, await self.commits.save_async(task))

    @counted("update_task")
    def update_task(
        self,
        task_id: UUID,
        *,
        actor: UUID,
        changes: Mapping[str, Any],
        expected_version: int | AbstractSet[int] | None = None,
        meta: Meta,
    ) -> Written:
        """Only the owner may change a task; a stale If-Match is refused, a lost race retried."""

        def apply(task: Task) -> None:
            edits = {k: v for k, v in changes.items() if k != "status"}
            if edits:
                task.edit(edits, meta)
            if "status" in changes:
                task.change_status(Status(changes["status"]), meta)

        return self._write(task_id, actor, expected_version, apply)

    @counted("delete_task")
    def delete_task(
        self,
        task_id: UUID,
        *,
        actor: UUID,
        expected_version: int | AbstractSet[int] | None = None,
        meta: Meta,
    ) -> Written:
        """Only the owner may delete a task; afterwards it is gone for every command."""
        return self._write(task_id, actor, expected_version, lambda task: task.delete(meta))

    def get_owned(self, task_id: UUID, actor: UUID) -> Task:
        """Someone else's task is reported exactly like a missing one."""
        try:
            task: Task = self.repository.get(task_id)
        except AggregateNotFoundError:
            raise TaskNotFound(str(task_id)) from None
        if task.owner_id != actor or task.deleted:
            raise TaskNotFound(str(task_id))
        return task

    def _write(
        self,
        task_id: UUID,
        actor: UUID,
        expected_version: int | AbstractSet[int] | None,
        apply: Callable[[Task], None],
    ) -> Written:
        # If-Match may name several versions (a list of ETags): any of them is current enough.
        expected = {expected_version} if isinstance(expected_version, int) else expected_version
        attempts = 1 if expected is not None else RACE_RETRIES
        for _ in range(attempts):
            task = self.get_owned(task_id, actor)
            if expected is not None and task.version not in expected:
                raise VersionMismatch(sorted(expected), task.version)
            apply(task)
            if not task.pending_events:
                return Written(task.id, task.version, None)
            try:
                return Written.of(task.id, task.version, self.commits.save(task))
            except IntegrityError:
                continue
        raise ConcurrentWrite(f"task {task_id} was changed by another request")
