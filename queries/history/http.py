"""Audit routes: a task's history, and the ?as_of=T answer of GET /v1/tasks/{id}, both from the
event store.

GET /v1/tasks/{id} itself belongs to the task query routes (queries/http/tasks.py, read model);
it declares ``as_of: AsOf = None`` and, when it is set, answers with ``task_as_of``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, BeforeValidator

from domain.instants import not_a_number
from domain.tasks import Priority, Status
from queries.history.ports import HistoryEntry, TaskHistory, TaskState
from queries.http.deps import CurrentUser

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

AsOf = Annotated[
    Annotated[AwareDatetime, BeforeValidator(not_a_number)] | None,
    Query(
        description="An ISO 8601 date-time with a zone: answer with the task as it was then, "
        "rebuilt from the event store (404 if it did not exist yet or was already deleted).",
    ),
]


def _task_history(request: Request) -> TaskHistory:
    history: TaskHistory = request.app.state.task_history
    return history


History = Annotated[TaskHistory, Depends(_task_history)]


class FieldChangeOut(BaseModel):
    old: Any
    new: Any


class HistoryItem(BaseModel):
    version: int
    type: str
    at: AwareDatetime
    actor_id: str | None
    changes: dict[str, FieldChangeOut]

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryItem:
        return cls(
            version=entry.version,
            type=entry.type,
            at=entry.at,
            actor_id=entry.actor_id,
            changes={k: FieldChangeOut(old=c.old, new=c.new) for k, c in entry.changes.items()},
        )


class HistoryOut(BaseModel):
    items: list[HistoryItem]


class TaskOut(BaseModel):
    """API.md's task."""

    id: UUID
    title: str
    description: str
    status: Status
    priority: Priority
    due_date: AwareDatetime | None
    labels: list[str]
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int

    @classmethod
    def of(cls, state: TaskState) -> TaskOut:
        return cls(
            id=state.id,
            title=state.title,
            description=state.description,
            status=Status(state.status),
            priority=Priority(state.priority),
            due_date=state.due_date,
            labels=list(state.labels),
            created_at=state.created_at,
            updated_at=state.updated_at,
            version=state.version,
        )


@router.get(
    "/{task_id}/history",
    response_model=HistoryOut,
    responses={404: {"description": "no such task, or not the caller's"}},
)
async def get_task_history(task_id: UUID, user: CurrentUser, history: History) -> HistoryOut:
    """Every change of the caller's task, oldest first: who, when, and each field's old and new
    value. Deleted tasks keep their history for their owner."""
    entries = await run_in_threadpool(lambda: history.history(task_id, owner_id=user))
    return HistoryOut(items=[HistoryItem.of(entry) for entry in entries])


async def task_as_of(
    request: Request, response: Response, task_id: UUID, user: UUID, as_of: datetime
) -> TaskOut:
    """The owner's task as it stood at ``as_of``; not yet created, or already deleted, is 404."""
    history = _task_history(request)
    state = await run_in_threadpool(lambda: history.as_of(task_id, as_of, owner_id=user))
    response.headers["ETag"] = f'"{state.version}"'
    return TaskOut.of(state)
