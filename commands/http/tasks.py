"""Task command routes: create, change, delete. Reads live in queries/."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from commands.http.deps import CurrentUser, TasksApp, remember_write, request_meta
from commands.http.responses import JsonBody
from commands.tasks import Tasks
from commands.written import Written
from domain.errors import UnparseablePrecondition
from domain.tasks import Priority, Status

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

Title = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]
Label = Annotated[str, Field(min_length=1, max_length=50)]
Labels = Annotated[list[Label], Field(max_length=20)]


class _TaskFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("title", check_fields=False)
    @classmethod
    def _title_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("title must not be blank")
        return value

    @field_validator("labels", check_fields=False)
    @classmethod
    def _labels_distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("labels must be distinct")
        return value

    @field_validator("due_date", check_fields=False)
    @classmethod
    def _due_in_utc(cls, value: AwareDatetime | None) -> AwareDatetime | None:
        return None if value is None else value.astimezone(UTC)


class CreateTask(_TaskFields):
    title: Title
    description: Description = ""
    status: Status = Status.TODO
    priority: Priority = Priority.MEDIUM
    due_date: AwareDatetime | None = None
    labels: Labels = []


class ChangeTask(_TaskFields):
    """Any subset of the writable fields; only ``due_date`` may be set to null."""

    title: Title | None = None
    description: Description | None = None
    status: Status | None = None
    priority: Priority | None = None
    due_date: AwareDatetime | None = None
    labels: Labels | None = None

    @field_validator("title", "description", "status", "priority", "labels", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null")
        return value

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class WrittenOut(BaseModel):
    id: UUID
    version: int
    position: int | None = Field(
        description="The write's place in the Tasks notification log. null when the command "
        "changed nothing (a PATCH that sets every field to the value it has): no event was "
        "written, so the version is unchanged and there is no write for a read to wait for."
    )


# The ETags this API issues are versions: "3". W/"3" and a bare 3 are taken too. ASCII digits
# only (str.isdigit() also takes "²"), and few enough that the number stays a number.
_ETAG = re.compile(r'(?:W/)?("?)([0-9]{1,18})\1')


def parse_if_match(value: str | None) -> int | None:
    """The version If-Match names; None when there is no precondition (no header, or ``*``,
    which matches any task that exists)."""
    if value is None:
        return None
    text = value.strip()
    if text == "*":
        return None
    match = _ETAG.fullmatch(text)
    if match is None:
        raise UnparseablePrecondition('If-Match must be an ETag this API issued, like "3", or *')
    return int(match[2])


def _out(written: Written, status_code: int = 200, **headers: str) -> Response:
    """WrittenOut's shape, built here and sent as it is (see commands.http.responses)."""
    return JsonBody(
        {"id": written.id, "version": written.version, "position": written.position},
        status_code,
        {"ETag": f'"{written.version}"', **headers},
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WrittenOut)
async def create_task(
    body: CreateTask, user: CurrentUser, tasks: TasksApp, request: Request
) -> Response:
    """Create a task owned by the caller."""
    # Awaited on the event loop: only the group commit's thread touches the store.
    written = await tasks.create_task_async(
        owner_id=user, meta=request_meta(request, user), **body.model_dump()
    )
    await remember_write(request, user, Tasks.name, written)
    return _out(written, status.HTTP_201_CREATED, Location=f"/v1/tasks/{written.id}")


@router.patch("/{task_id}", response_model=WrittenOut)
async def change_task(
    task_id: UUID,
    body: ChangeTask,
    user: CurrentUser,
    tasks: TasksApp,
    request: Request,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Change any subset of a task's fields; only its owner may, and If-Match guards the version."""
    expected = parse_if_match(if_match)
    written = await run_in_threadpool(
        lambda: tasks.update_task(
            task_id,
            actor=user,
            changes=body.changes(),
            expected_version=expected,
            meta=request_meta(request, user),
        )
    )
    await remember_write(request, user, Tasks.name, written)
    return _out(written)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_task(
    task_id: UUID,
    user: CurrentUser,
    tasks: TasksApp,
    request: Request,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Delete a task; afterwards it answers 404 everywhere, though its history stays."""
    expected = parse_if_match(if_match)
    written = await run_in_threadpool(
        lambda: tasks.delete_task(
            task_id, actor=user, expected_version=expected, meta=request_meta(request, user)
        )
    )
    await remember_write(request, user, Tasks.name, written)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
