"""The task list read model's shapes: one row per task, how lists are filtered, sorted, paged.

Shared by the projector (which writes rows), every store adapter (MongoDB, in-memory) and the
query side (which reads them), so all of them agree on what a row and a page are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.tasks import PRIORITY_RANK, Priority

NAME = "task_list"  # the projection, its collections and its Redis keys

# The sort keys the API offers, and the stored field each one orders by.
SORT_FIELDS: dict[str, str] = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    # A task without a due date sorts after every dated one (ascending), so the key is never null
    # and keyset pagination needs no special case for it.
    "due_date": "due_sort",
    "priority": "priority_rank",
}
NO_DUE_DATE = datetime(9999, 12, 31, tzinfo=UTC)
STATUSES = ("todo", "in_progress", "done")


def priority_rank(priority: str) -> int:
    return PRIORITY_RANK[Priority(priority)]


def due_sort(due_date: datetime | None) -> datetime:
    return NO_DUE_DATE if due_date is None else due_date


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A task as the API shows it, plus its owner."""

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
class Sort:
    key: str = "created_at"  # one of SORT_FIELDS
    descending: bool = True

    @classmethod
    def parse(cls, text: str) -> Sort:
        """``created_at`` or ``-created_at``; anything else raises ValueError."""
        key = text.removeprefix("-")
        if key not in SORT_FIELDS:
            raise ValueError(f"sort must be one of {', '.join(SORT_FIELDS)}, optionally with '-'")
        return cls(key, text.startswith("-"))

    @property
    def field(self) -> str:
        return SORT_FIELDS[self.key]

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.key

    def value(self, row: TaskRow) -> datetime | int:
        """The row's value of the stored sort field."""
        if self.key == "priority":
            return priority_rank(row.priority)
        if self.key == "due_date":
            return due_sort(row.due_date)
        moment: datetime = getattr(row, self.key)
        return moment


@dataclass(frozen=True, slots=True)
class After:
    """A keyset position: the sort value and id of the last row of the previous page."""

    value: datetime | int
    task_id: UUID


@dataclass(frozen=True, slots=True)
class TaskFilter:
    statuses: tuple[str, ...] = ()  # any of
    priorities: tuple[str, ...] = ()  # any of
    labels: tuple[str, ...] = ()  # all of
    text: str | None = None  # case-insensitive substring of title or description
    due_before: datetime | None = None  # due_date < due_before
    due_after: datetime | None = None  # due_date > due_after

    def text_pattern(self) -> str | None:
        """The search as a regular expression that matches the text literally."""
        if self.text is None:
            return None
        # re.escape leaves control characters raw; PCRE rejects a raw NUL, so spell them out.
        return "".join(
            f"\\x{ord(c):02x}" if c < " " or c == "\x7f" else re.escape(c) for c in self.text
        )


@dataclass(frozen=True, slots=True)
class TaskQuery:
    filter: TaskFilter = field(default_factory=TaskFilter)
    sort: Sort = field(default_factory=Sort)
    limit: int = 20
    after: After | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    items: tuple[TaskRow, ...]
    # Where the next page starts; None when this page is the last one.
    next: After | None


@dataclass(frozen=True, slots=True)
class TaskCounts:
    todo: int = 0
    in_progress: int = 0
    done: int = 0
    overdue: int = 0

    @property
    def total(self) -> int:
        return self.todo + self.in_progress + self.done


def matches(row: TaskRow, flt: TaskFilter) -> bool:
    """The filter's meaning, spelled once in Python (the MongoDB adapter spells it as a query)."""
    if flt.statuses and row.status not in flt.statuses:
        return False
    if flt.priorities and row.priority not in flt.priorities:
        return False
    if any(label not in row.labels for label in flt.labels):
        return False
    pattern = flt.text_pattern()
    if pattern is not None and not (
        re.search(pattern, row.title, re.IGNORECASE)
        or re.search(pattern, row.description, re.IGNORECASE)
    ):
        return False
    if flt.due_before is not None and (row.due_date is None or row.due_date >= flt.due_before):
        return False
    return not (
        flt.due_after is not None and (row.due_date is None or row.due_date <= flt.due_after)
    )


def row_document(row: TaskRow) -> dict[str, Any]:
    """The stored document of a row (the MongoDB adapter's shape)."""
    return {
        "_id": str(row.id),
        "owner_id": str(row.owner_id),
        "title": row.title,
        "description": row.description,
        "status": row.status,
        "priority": row.priority,
        "priority_rank": priority_rank(row.priority),
        "due_date": row.due_date,
        "due_sort": due_sort(row.due_date),
        "labels": list(row.labels),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "version": row.version,
        "deleted": False,
    }


def document_row(doc: Mapping[str, Any]) -> TaskRow:
    """The row of a stored document: ``row_document`` read back."""
    return TaskRow(
        id=UUID(doc["_id"]),
        owner_id=UUID(doc["owner_id"]),
        title=doc["title"],
        description=doc["description"],
        status=doc["status"],
        priority=doc["priority"],
        due_date=doc["due_date"],
        labels=tuple(doc["labels"]),
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        version=int(doc["version"]),
    )


@dataclass(frozen=True, slots=True)
class CacheToken:
    """What a reader saw before reading MongoDB: the epoch and the user's version."""

    generation: int
    epoch: int
    version: int
