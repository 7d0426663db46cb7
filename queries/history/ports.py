"""What the audit side answers, and the ports that answer it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID


@dataclass(frozen=True, slots=True)
class FieldChange:
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One stored event, told as who changed what, when."""

    version: int
    type: str  # the catalogue name, e.g. "TaskEdited"
    at: datetime
    actor_id: str | None
    changes: Mapping[str, FieldChange]


@dataclass(frozen=True, slots=True)
class TaskState:
    """A task as it stood after some event: the fields of API.md's task, plus its owner."""

    id: UUID
    owner_id: UUID
    title: str
    description: str
    status: str
    priority: str
    due_date: datetime | None
    labels: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class ExportedEvent:
    """One event of a log as an auditor receives it; secrets are already redacted."""

    application: str
    position: int
    type: str
    originator_id: UUID
    version: int
    at: datetime
    meta: Mapping[str, Any] | None
    data: Mapping[str, Any]


class TaskHistory(Protocol):
    """A task's audit trail and its past states. ``owner_id=None`` is the operator's view."""

    def history(self, task_id: UUID, *, owner_id: UUID | None) -> Sequence[HistoryEntry]:
        """Every event oldest first, deletes included; TaskNotFound if missing or not theirs."""
        ...

    def as_of(self, task_id: UUID, instant: datetime, *, owner_id: UUID | None) -> TaskState:
        """The task at ``instant`` (aware); TaskNotFound if it did not exist then or was deleted."""
        ...


class UserHistory(Protocol):
    def history(self, user_id: UUID) -> Sequence[HistoryEntry]:
        """Registration, renames, reset requests and password changes; never a hash or token."""
        ...


class EventExport(Protocol):
    application: str

    def events(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[ExportedEvent]:
        """The log in order, ``since <= at < until``, read page by page in constant memory."""
        ...
