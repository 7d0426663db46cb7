"""Typed dependencies of the command routes; ops/ puts the objects on ``app.state``."""

from __future__ import annotations

from typing import Annotated, Protocol
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from commands.tasks import Tasks
from commands.written import Written
from domain.errors import Unauthenticated
from domain.meta import Meta, meta

bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


class Authenticator(Protocol):
    async def user_for(self, access_token: str) -> UUID:
        """The user an access token speaks for; raises Unauthenticated otherwise."""
        ...


# Dependencies are coroutines even when they only read app.state: FastAPI runs a plain def
# dependency in its thread pool, a thread hop per request for nothing.
async def _tasks(request: Request) -> Tasks:
    tasks: Tasks = request.app.state.tasks
    return tasks


async def _current_user(request: Request, token: Annotated[str | None, Depends(bearer)]) -> UUID:
    if not token:
        raise Unauthenticated("missing bearer token")
    authenticator: Authenticator = request.app.state.authenticator
    user_id = await authenticator.user_for(token)
    request.state.user_id = str(user_id)
    return user_id


def request_meta(request: Request, actor: UUID | None = None) -> Meta:
    return meta(actor, request.state.request_id, request.headers.get("traceparent"))


class WriteTracker(Protocol):
    """Remembers a user's last write so their next read can wait for it (read-your-writes)."""

    async def wrote(self, user_id: UUID, application: str, position: int) -> None: ...


async def remember_write(
    request: Request, user_id: UUID, application: str, written: Written
) -> None:
    """Let the user's next read wait for this write; a write that changed nothing has no place."""
    if written.position is not None:
        tracker: WriteTracker = request.app.state.write_tracker
        await tracker.wrote(user_id, application, written.position)


TasksApp = Annotated[Tasks, Depends(_tasks)]
CurrentUser = Annotated[UUID, Depends(_current_user)]
