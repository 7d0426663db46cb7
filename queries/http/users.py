"""User query routes: who am I."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel

from domain.errors import UserNotFound
from queries.http.deps import CurrentUser, Users

router = APIRouter(prefix="/v1/users", tags=["users"])


class Me(BaseModel):
    id: UUID
    email: str
    display_name: str
    created_at: AwareDatetime


@router.get("/me", response_model=Me, responses={401: {"description": "not authenticated"}})
async def get_me(user: CurrentUser, users: Users) -> Me:
    """The caller's own profile; a token is all it takes, and it shows only its own user."""
    profile = await users.profile(user)
    if profile is None:
        raise UserNotFound(str(user))
    return Me(
        id=profile.id,
        email=profile.email,
        display_name=profile.display_name,
        created_at=profile.created_at,
    )
