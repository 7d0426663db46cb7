"""Typed dependencies of the query routes; ops/ puts the objects on ``app.state``.

The read side cannot import the write side, so it declares the authenticator port itself;
ops hands both sides the same object.
"""

from __future__ import annotations

from typing import Annotated, Protocol
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from domain.errors import Unauthenticated
from queries.users.ports import UserDirectory

bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


class Authenticator(Protocol):
    async def user_for(self, access_token: str) -> UUID:
        """The user an access token speaks for; raises Unauthenticated otherwise."""
        ...


async def _current_user(request: Request, token: Annotated[str | None, Depends(bearer)]) -> UUID:
    if not token:
        raise Unauthenticated("missing bearer token")
    authenticator: Authenticator = request.app.state.authenticator
    user_id = await authenticator.user_for(token)
    request.state.user_id = str(user_id)
    return user_id


async def _user_directory(request: Request) -> UserDirectory:
    directory: UserDirectory = request.app.state.user_directory
    return directory


CurrentUser = Annotated[UUID, Depends(_current_user)]
Users = Annotated[UserDirectory, Depends(_user_directory)]
