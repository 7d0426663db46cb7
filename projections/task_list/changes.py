"""From task events to row changes: what a batch of events does to each task it touches.

Consecutive events of one task in one batch fold into ONE change carrying the last event's
version, so a store writes each task once per batch. Applying a fold of versions a..b to a row
that already holds any version in a-1..b-1 yields version b exactly (later fields overwrite
earlier ones), and the version guard turns it into a no-op on a row at b or later: that is
what makes re-applied batches harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from projections.envelope import Envelope
from projections.task_list.model import due_sort, priority_rank

CREATED = "domain.tasks:Task.Created"
EDITED = "domain.tasks:Task.Edited"
STATUS_CHANGED = "domain.tasks:Task.StatusChanged"
DELETED = "domain.tasks:Task.Deleted"
TOPICS = (CREATED, EDITED, STATUS_CHANGED, DELETED)


def to_millis(moment: datetime) -> datetime:
    """BSON dates keep milliseconds; every store keeps exactly what MongoDB would."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _due(value: str | None) -> datetime | None:
    return None if value is None else to_millis(datetime.fromisoformat(value))


@dataclass(slots=True)
class TaskChange:
    """The net effect of consecutive events of one task: the stored fields they set."""

    task_id: UUID
    version: int  # of the last event folded in
    position: int  # log position of the last event folded in
    created: bool = False  # the Created event is among them, so the row may be inserted
    owner_id: UUID | None = None  # known when created
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return bool(self.fields.get("deleted"))


def _fields(envelope: Envelope) -> dict[str, Any]:
    event = envelope.event
    at = to_millis(envelope.timestamp)
    if envelope.topic == CREATED:
        due = _due(event.due_date)
        return {
            "owner_id": str(event.owner_id),
            "title": event.title,
            "description": event.description,
            "status": event.status,
            "priority": event.priority,
            "priority_rank": priority_rank(event.priority),
            "due_date": due,
            "due_sort": due_sort(due),
            "labels": list(dict.fromkeys(event.labels)),
            "created_at": at,
            "updated_at": at,
            "deleted": False,
        }
    if envelope.topic == EDITED:
        fields: dict[str, Any] = {"updated_at": at}
        for key, value in event.changes.items():
            if key == "due_date":
                fields["due_date"] = _due(value)
                fields["due_sort"] = due_sort(fields["due_date"])
            elif key == "priority":
                fields["priority"] = str(value)
                fields["priority_rank"] = priority_rank(value)
            elif key == "labels":
                fields["labels"] = list(dict.fromkeys(value))
            elif key in ("title", "description"):
                fields[key] = value
        return fields
    if envelope.topic == STATUS_CHANGED:
        return {"status": event.status, "updated_at": at}
    if envelope.topic == DELETED:
        return {"deleted": True, "updated_at": at}
    return {}


def fold(batch: Iterable[Envelope]) -> list[TaskChange]:
    """One change per task, in the order tasks first appear; unknown topics are ignored."""
    changes: dict[UUID, TaskChange] = {}
    for envelope in batch:
        if envelope.topic not in TOPICS:
            continue
        change = changes.get(envelope.originator_id)
        if change is None:
            change = changes[envelope.originator_id] = TaskChange(
                envelope.originator_id, envelope.originator_version, envelope.position
            )
        if envelope.topic == CREATED:
            change.created = True
            change.owner_id = envelope.event.owner_id
        change.fields.update(_fields(envelope))
        change.version = envelope.originator_version
        change.position = envelope.position
        change.fields["version"] = envelope.originator_version
    return list(changes.values())


def owners_of(changes: Sequence[TaskChange]) -> dict[UUID, UUID]:
    return {c.task_id: c.owner_id for c in changes if c.owner_id is not None}
