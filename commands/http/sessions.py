"""The caller's sessions under /v1/users/me/sessions: list them, end one.

Sessions are auth state (Redis), not a projection of events, so these routes read the session
store the authenticator checks, as logout does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import AwareDatetime, BaseModel

from commands.auth.sessions import SessionRecord, Sessions
from commands.http.deps import bearer
from domain.errors import Unauthenticated

router = APIRouter(prefix="/v1/users/me/sessions", tags=["users"])


async def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


async def _access_token(token: Annotated[str | None, Depends(bearer)]) -> str:
    if not token:
        raise Unauthenticated("missing bearer token")
    return token


SessionsApp = Annotated[Sessions, Depends(_sessions)]
AccessToken = Annotated[str, Depends(_access_token)]


class SessionOut(BaseModel):
    id: str
    created_at: AwareDatetime
    # The last login or token refresh of the session.
    last_used_at: AwareDatetime
    # The client address that logged in, and its User-Agent (cut at 256 characters).
    client: str
    user_agent: str
    # The session of the token that asked.
    current: bool

    @classmethod
    def of(cls, record: SessionRecord, current: str) -> SessionOut:
        return cls(
            id=record.session_id,
            created_at=datetime.fromtimestamp(record.created_at, UTC),
            last_used_at=datetime.fromtimestamp(record.last_used_at, UTC),
            client=record.client,
            user_agent=record.user_agent,
            current=record.session_id == current,
        )


class SessionList(BaseModel):
    items: list[SessionOut]


_UNAUTHORIZED: dict[int | str, dict[str, str]] = {401: {"description": "not authenticated"}}


@router.get("", response_model=SessionList, operation_id="listSessions", responses=_UNAUTHORIZED)
async def list_sessions(sessions: SessionsApp, access_token: AccessToken) -> SessionList:
    """The caller's live sessions, the most recently used first; ``current`` marks the caller's."""
    current, records = await sessions.list(access_token)
    ordered = sorted(records, key=lambda r: (r.last_used_at, r.session_id), reverse=True)
    return SessionList(items=[SessionOut.of(record, current) for record in ordered])


@router.delete(
    "/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="endSession",
    responses={**_UNAUTHORIZED, 404: {"description": "no such session of the caller's"}},
)
async def end_session(
    session_id: Annotated[str, Path(min_length=1, max_length=64)],
    sessions: SessionsApp,
    access_token: AccessToken,
) -> Response:
    """End one of the caller's sessions: its access and refresh tokens stop working at once."""
    await sessions.end(access_token, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
