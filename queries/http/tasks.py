"""Task query routes: the list, the counters and one task, all read from the projections."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import unicodedata
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from domain.errors import Unavailable
from domain.instants import not_a_number
from domain.tasks import Priority, Status
from projections.task_list.model import After, Sort, TaskFilter, TaskPage, TaskQuery, TaskRow
from queries.history.http import AsOf, TaskOut, task_as_of
from queries.http.deps import CurrentUser
from queries.tasks.reads import TaskQueries

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

Label = Annotated[str, Field(min_length=1, max_length=50)]
Instant = Annotated[AwareDatetime, BeforeValidator(not_a_number)]


async def _task_queries(request: Request) -> TaskQueries:
    queries: TaskQueries | None = request.app.state.task_queries
    if queries is None:  # the process was started without a document store
        raise Unavailable("document store")
    return queries


Queries = Annotated[TaskQueries, Depends(_task_queries)]


def encode_cursor(sort: Sort, after: After) -> str:
    value = after.value.isoformat() if isinstance(after.value, datetime) else after.value
    raw = json.dumps({"s": str(sort), "v": value, "id": str(after.task_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str, sort: Sort) -> After:
    """A cursor names its sort; one from another sort, or not ours at all, is refused."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(raw, dict) or raw.get("s") != str(sort):
            raise ValueError
        value: Any = raw["v"]
        if sort.key == "priority":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError
        else:
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError
        return After(value, UUID(raw["id"]))
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise ValueError("cursor is not valid for this sort; start again without it") from None


class ListParams(BaseModel):
    """Filters combine with AND; repeated status or priority means any of them, repeated label
    means all of them."""

    model_config = ConfigDict(frozen=True)

    status: list[Status] = []
    priority: list[Priority] = []
    label: list[Label] = Field(default=[], max_length=20)
    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="case-insensitive text in the title or description",
        # What _printable checks (no Unicode Cc character), for the document only.
        json_schema_extra={"pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"},
    )
    due_before: Instant | None = Field(default=None, description="due strictly before")
    due_after: Instant | None = Field(default=None, description="due strictly after")
    sort: str = Field(
        default="-created_at",
        description="created_at, updated_at, due_date or "
        "priority; a '-' prefix sorts descending. Tasks without a due date come "
        "after every dated one when sorting by due_date ascending.",
    )
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(
        default=None, max_length=1024, description="next_cursor of the previous page"
    )

    @field_validator("q")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        # No title holds a control character, and MongoDB's PCRE refuses a raw NUL.
        if value is not None and any(unicodedata.category(c) == "Cc" for c in value):
            raise ValueError("q must not contain control characters")
        return value

    @field_validator("sort")
    @classmethod
    def _known_sort(cls, value: str) -> str:
        Sort.parse(value)
        return value

    @model_validator(mode="after")
    def _cursor_fits(self) -> ListParams:
        if self.cursor is not None:
            decode_cursor(self.cursor, Sort.parse(self.sort))
        return self

    def query(self) -> TaskQuery:
        sort = Sort.parse(self.sort)
        return TaskQuery(
            filter=TaskFilter(
                statuses=tuple(dict.fromkeys(str(s) for s in self.status)),
                priorities=tuple(dict.fromkeys(str(p) for p in self.priority)),
                labels=tuple(dict.fromkeys(self.label)),
                text=self.q,
                due_before=self.due_before,
                due_after=self.due_after,
            ),
            sort=sort,
            limit=self.limit,
            after=None if self.cursor is None else decode_cursor(self.cursor, sort),
        )

    def cache_key(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:32]


class TaskListOut(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class StatsOut(BaseModel):
    todo: int
    in_progress: int
    done: int
    total: int
    overdue: int


def task_out(row: TaskRow) -> TaskOut:
    return TaskOut(
        id=row.id,
        title=row.title,
        description=row.description,
        status=Status(row.status),
        priority=Priority(row.priority),
        due_date=row.due_date,
        labels=list(row.labels),
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
    )


def _render(sort: Sort) -> Any:
    def render(page: TaskPage) -> bytes:
        cursor = None if page.next is None else encode_cursor(sort, page.next)
        out = TaskListOut(items=[task_out(row) for row in page.items], next_cursor=cursor)
        return out.model_dump_json().encode()

    return render


@router.get("", response_model=TaskListOut, responses={422: {"description": "bad parameter"}})
async def list_tasks(
    params: Annotated[ListParams, Query()], user: CurrentUser, queries: Queries
) -> Response:
    """The caller's tasks, filtered, sorted and paged by cursor; pages stay stable while tasks
    change (ties on the sort key are broken by id)."""
    query = params.query()
    body = await queries.page(user, query, params.cache_key(), _render(query.sort))
    return Response(body, media_type="application/json")


@router.get("/stats", response_model=StatsOut)
async def get_task_stats(user: CurrentUser, queries: Queries) -> StatsOut:
    """How many of the caller's tasks are in each status, in all, and overdue (not done, due
    date passed)."""
    counts = await queries.counts(user)
    return StatsOut(
        todo=counts.todo,
        in_progress=counts.in_progress,
        done=counts.done,
        total=counts.total,
        overdue=counts.overdue,
    )


@router.get(
    "/{task_id}",
    response_model=TaskOut,
    responses={
        200: {
            "headers": {
                "ETag": {"description": 'the version, as "3"', "schema": {"type": "string"}}
            }
        },
        404: {"description": "no such task, or not the caller's (or, with as_of, not then)"},
        304: {"description": "If-None-Match names the current version"},
    },
)
async def get_task(
    task_id: UUID,
    user: CurrentUser,
    queries: Queries,
    request: Request,
    response: Response,
    as_of: AsOf = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Any:
    """The caller's task, with its version as ETag; someone else's answers 404 like a missing
    one. With ``as_of``, the task as it was then, from the event store."""
    if as_of is not None:
        return await task_as_of(request, response, task_id, user, as_of)
    row = await queries.task(user, task_id)
    etag = f'"{row.version}"'
    if if_none_match is not None and etag in {
        t.strip().removeprefix("W/") for t in if_none_match.split(",")
    }:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return task_out(row)
