"""The Task aggregate: a user's unit of work, changed only by its owner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.meta import Meta


class Status(StrEnum):
    TODO = "todo"
    IN_PROGRESS = "in_progress"
    DONE = "done"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


PRIORITY_RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2}
EDITABLE_FIELDS = ("title", "description", "priority", "due_date", "labels")


def _parse_due(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _labels(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


class Task(Aggregate):
    """A task. Events store plain values (str, ISO dates) so they outlive the code."""

    class Created(Aggregate.Created):
        owner_id: UUID
        title: str
        description: str
        status: str
        priority: str
        due_date: str | None
        labels: list[str]
        meta: Meta

    @event(Created)
    def __init__(
        self,
        owner_id: UUID,
        title: str,
        description: str,
        status: str,
        priority: str,
        due_date: str | None,
        labels: list[str],
        meta: Meta,
    ) -> None:
        self.owner_id = owner_id
        self.title = title
        self.description = description
        self.status = Status(status)
        self.priority = Priority(priority)
        self.due_date = _parse_due(due_date)
        self.labels = _labels(labels)
        self.deleted = False

    @classmethod
    def create(
        cls,
        *,
        owner_id: UUID,
        title: str,
        description: str = "",
        status: Status = Status.TODO,
        priority: Priority = Priority.MEDIUM,
        due_date: datetime | None = None,
        labels: Iterable[str] = (),
        meta: Meta,
    ) -> Task:
        return cls(
            owner_id=owner_id,
            title=title,
            description=description,
            status=str(status),
            priority=str(priority),
            due_date=None if due_date is None else due_date.isoformat(),
            labels=list(_labels(labels)),
            meta=meta,
        )

    def edit(self, changes: Mapping[str, Any], meta: Meta) -> bool:
        """Apply the fields that really change; returns False when nothing did."""
        encoded = {k: self._encode(k, v) for k, v in changes.items() if k in EDITABLE_FIELDS}
        current = {k: self._encode(k, getattr(self, k)) for k in encoded}
        delta = {k: v for k, v in encoded.items() if current[k] != v}
        if not delta:
            return False
        self._edited(changes=delta, meta=meta)
        return True

    @event("Edited")
    def _edited(self, changes: dict[str, Any], meta: Meta) -> None:
        for key, value in changes.items():
            if key == "due_date":
                self.due_date = _parse_due(value)
            elif key == "priority":
                self.priority = Priority(value)
            elif key == "labels":
                self.labels = _labels(value)
            else:
                setattr(self, key, value)

    def change_status(self, status: Status, meta: Meta) -> bool:
        if status == self.status:
            return False
        self._status_changed(status=str(status), meta=meta)
        return True

    @event("StatusChanged")
    def _status_changed(self, status: str, meta: Meta) -> None:
        self.status = Status(status)

    @event("Deleted")
    def delete(self, meta: Meta) -> None:
        self.deleted = True

    @staticmethod
    def _encode(key: str, value: Any) -> Any:
        if key == "due_date":
            return None if value is None else value.isoformat()
        if key == "labels":
            return list(_labels(value))
        if key == "priority":
            return str(Priority(value))
        return value

    def snapshot_state(self) -> dict[str, Any]:
        """The task's fields as plain values: what replay must reproduce exactly."""
        return {
            "id": self.id,
            "owner_id": self.owner_id,
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "priority": self.priority,
            "due_date": self.due_date,
            "labels": self.labels,
            "deleted": self.deleted,
            "version": self.version,
            "created_at": self.created_on,
            "updated_at": self.modified_on,
        }
