"""History and past states, folded from the stored events with the domain's own aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import Application, project_aggregate

from domain.errors import TaskNotFound, UserNotFound
from domain.tasks import Task
from queries.history.log import actor_of, event_type, stored_events
from queries.history.ports import FieldChange, HistoryEntry, TaskState

# What a task's history reports; "deleted" appears only when it flips.
TASK_FIELDS = ("title", "description", "status", "priority", "due_date", "labels")
REDACTED = "[redacted]"


def _task_fields(task: Task) -> dict[str, Any]:
    return {
        "title": task.title,
        "description": task.description,
        "status": str(task.status),
        "priority": str(task.priority),
        "due_date": task.due_date,
        "labels": list(task.labels),
        "deleted": task.deleted,
    }


def _task_state(task: Task) -> TaskState:
    return TaskState(
        id=task.id,
        owner_id=task.owner_id,
        title=task.title,
        description=task.description,
        status=str(task.status),
        priority=str(task.priority),
        due_date=task.due_date,
        labels=tuple(task.labels),
        created_at=task.created_on,
        updated_at=task.modified_on,
        version=task.version,
    )


class EventStoreTaskHistory:
    """Replays one task's events through the Task aggregate, diffing its fields per event."""

    def __init__(self, log: Application[UUID]) -> None:
        self.log = log

    def history(self, task_id: UUID, *, owner_id: UUID | None) -> Sequence[HistoryEntry]:
        """A deleted task keeps its trail; someone else's is reported as missing."""
        entries: list[HistoryEntry] = []
        task: Task | None = None
        before: dict[str, Any] = {}
        for event in stored_events(self.log, task_id):
            folded = project_aggregate(task, [event])
            if not isinstance(folded, Task):
                raise TaskNotFound(f"no task {task_id}")
            task = folded
            after = _task_fields(task)
            if not before:
                changes = {k: FieldChange(None, after[k]) for k in TASK_FIELDS}
            else:
                changes = {k: FieldChange(before[k], v) for k, v in after.items() if before[k] != v}
            entries.append(
                HistoryEntry(
                    version=event.originator_version,
                    type=event_type(event),
                    at=event.timestamp,
                    actor_id=actor_of(event),
                    changes=changes,
                )
            )
            before = after
        if task is None or (owner_id is not None and task.owner_id != owner_id):
            raise TaskNotFound(f"no task {task_id}")
        return entries

    def as_of(self, task_id: UUID, instant: datetime, *, owner_id: UUID | None) -> TaskState:
        """The fold of every event stamped at or before the instant; none, or a delete, is 404."""
        if instant.tzinfo is None:
            raise ValueError("instant must be timezone-aware")
        task: Task | None = None
        for event in stored_events(self.log, task_id):
            # A task's events are stamped in version order (each is made after reading the
            # last), so the state at an instant is a prefix of its stream.
            if event.timestamp > instant:
                break
            folded = project_aggregate(task, [event])
            if not isinstance(folded, Task):
                raise TaskNotFound(f"no task {task_id}")
            task = folded
        if task is None or (owner_id is not None and task.owner_id != owner_id):
            raise TaskNotFound(f"task {task_id} did not exist at {instant.isoformat()}")
        if task.deleted:
            raise TaskNotFound(
                f"task {task_id} was deleted at {task.modified_on.isoformat()}, "
                f"before {instant.isoformat()}"
            )
        return _task_state(task)


class EventStoreUserHistory:
    """Reads a user's events field by field from a whitelist, so no hash can slip through."""

    def __init__(self, log: Application[UUID]) -> None:
        self.log = log

    def history(self, user_id: UUID) -> Sequence[HistoryEntry]:
        """Registration, renames, reset requests, password changes; secrets stay redacted."""
        entries: list[HistoryEntry] = []
        display_name: str | None = None
        for event in stored_events(self.log, user_id):
            fields: Any = event  # each kind's attributes are read by name below
            kind = type(event).__qualname__
            if not entries and kind != "User.Registered":
                raise UserNotFound(f"no user {user_id}")
            changes: dict[str, FieldChange] = {}
            if kind == "User.Registered":
                display_name = fields.display_name
                changes = {
                    "email": FieldChange(None, fields.email),
                    "display_name": FieldChange(None, display_name),
                }
            elif kind == "User.Renamed":
                renamed: str = fields.display_name
                changes = {"display_name": FieldChange(display_name, renamed)}
                display_name = renamed
            elif kind == "User.PasswordResetRequested":
                changes = {
                    "reset_request": FieldChange(None, str(fields.request_id)),
                    "reset_expires_at": FieldChange(
                        None, datetime.fromisoformat(fields.expires_at)
                    ),
                }
            elif kind == "User.PasswordRehashed":
                # The same password under a costlier hash: shown, never its value.
                changes = {"password_hash": FieldChange(REDACTED, REDACTED)}
            elif kind == "User.PasswordChanged":
                changes = {"password": FieldChange(REDACTED, REDACTED)}
                used = fields.reset_request_id
                if used is not None:
                    changes["used_reset_request"] = FieldChange(None, str(used))
            entries.append(
                HistoryEntry(
                    version=event.originator_version,
                    type=event_type(event),
                    at=event.timestamp,
                    actor_id=actor_of(event),
                    changes=changes,
                )
            )
        if not entries:
            raise UserNotFound(f"no user {user_id}")
        return entries
