"""Task command routes: create, change, delete. Reads live in queries/."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from commands.http.deps import CurrentUser, TasksApp, remember_write, request_meta
from commands.http.responses import JsonBody
from commands.tasks import Tasks
from commands.written import Written
from domain.errors import UnparseablePrecondition
from domain.instants import not_a_number
from domain.tasks import Priority, Status

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

# The pattern says what _title_not_blank checks: some character that is not white space.
Title = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]
Description = Annotated[str, Field(max_length=5000)]
Label = Annotated[str, Field(min_length=1, max_length=50)]
Labels = Annotated[list[Label], Field(max_length=20, json_schema_extra={"uniqueItems": True})]
DueDate = Annotated[AwareDatetime, BeforeValidator(not_a_number)]


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
    due_date: DueDate | None = None
    labels: Labels = []


def _no_null_defaults(schema: dict[str, Any]) -> None:
    # A field that refuses null has no default to show: leaving it out leaves the task as is.
    for field in schema.get("properties", {}).values():
        if field.get("default", 0) is None and "anyOf" not in field:
            del field["default"]


class ChangeTask(_TaskFields):
    """Any subset of the writable fields; only ``due_date`` may be set to null."""

    model_config = ConfigDict(json_schema_extra=_no_null_defaults)

    # Absent means unchanged; null is refused (below), so the schema does not offer it.
    title: Title | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    status: Status | SkipJsonSchema[None] = None
    priority: Priority | SkipJsonSchema[None] = None
    due_date: DueDate | None = None
    labels: Labels | SkipJsonSchema[None] = None

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


# RFC 9110 entity-tags, one per list element: W/"3" (weak), "3", or a bare 3 (which older
# clients of this API send). etagc is any visible ASCII but a quote, or obs-text.
_ELEMENT = re.compile(r'\s*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)"|([0-9]+))\s*')
# Versions are ASCII digits (str.isdigit() also takes "²"), few enough to stay a number.
_VERSION = re.compile(r"[0-9]{1,18}")


def parse_if_match(value: str | None) -> frozenset[int] | None:
    """The versions If-Match accepts; None when there is no precondition (no header, or ``*``,
    which matches any task that exists). If-Match compares strongly (RFC 9110 13.1.1): a weak
    tag never matches, nor does a tag that is no version of ours, so they add nothing."""
    if value is None or value.strip() == "*":
        return None
    versions: set[int] = set()
    for element in value.split(","):
        match = _ELEMENT.fullmatch(element)
        if match is None:
            raise UnparseablePrecondition(
                'If-Match must be a list of ETags this API issued, like "3", or *'
            )
        weak, quoted, bare = match.groups()
        tag = bare if bare is not None else quoted
        if not weak and _VERSION.fullmatch(tag):
            versions.add(int(tag))
    return frozenset(versions)


def _out(written: Written, status_code: int = 200, **headers: str) -> Response:
    """WrittenOut's shape, built here and sent as it is (see commands.http.responses)."""
    return JsonBody(
        {"id": written.id, "version": written.version, "position": written.position},
        status_code,
        {"ETag": f'"{written.version}"', **headers},
    )


_ETAG_HEADER = {"description": 'the new version, as "3"', "schema": {"type": "string"}}
_IF_MATCH_FAILED: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such task, or not the caller's"},
    412: {"description": "If-Match names no current version of the task"},
    409: {"description": "a concurrent write won, again and again"},
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WrittenOut,
    responses={
        201: {
            "headers": {
                "ETag": _ETAG_HEADER,
                "Location": {"description": "the task's URL", "schema": {"type": "string"}},
            },
            # What a client (and a stateful fuzzer) can do next with the new task's id.
            "links": {
                name: {"operationId": name, "parameters": {"task_id": "$response.body#/id"}}
                for name in ("getTask", "updateTask", "deleteTask", "getTaskHistory")
            },
        }
    },
)
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


@router.patch(
    "/{task_id}",
    response_model=WrittenOut,
    responses={200: {"headers": {"ETag": _ETAG_HEADER}}, **_IF_MATCH_FAILED},
)
async def update_task(
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


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_IF_MATCH_FAILED)
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
