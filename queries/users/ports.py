"""The user directory port: small on purpose, so a MongoDB read model can replace the first
adapter (the event store) without the routes noticing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True, slots=True)
class UserProfile:
    id: UUID
    email: str
    display_name: str
    created_at: datetime


class UserDirectory(Protocol):
    async def profile(self, user_id: UUID) -> UserProfile | None:
        """The user's public profile, or None if there is no such user."""
        ...
