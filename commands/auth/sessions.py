"""Sessions: one per login, each with a chain of single-use refresh tokens.

An access token is only as good as its session: logout, refresh-token reuse and a password
reset delete sessions, and every access token of a deleted session stops working at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from commands.auth.tokens import Claims, JwtTokens, Kind, new_id
from domain.errors import InvalidCredentials, Unauthenticated

log = logging.getLogger("taskledger.auth")


@dataclass(frozen=True, slots=True)
class Session:
    user_id: UUID
    session_id: str
    # The one refresh token (its jti) that may be spent next.
    refresh_id: str
    # Version of the User whose password was checked to open the session.
    user_version: int


class Rotation(StrEnum):
    ROTATED = "rotated"
    # The presented refresh token was already spent: the session is now revoked.
    REUSED = "reused"
    # No such session: logged out, revoked, expired, or never opened.
    UNKNOWN = "unknown"


class SessionStore(Protocol):
    """Session state. Every transition is atomic: two concurrent rotations cannot both win."""

    async def open(self, session: Session, ttl: int) -> bool:
        """Start a session; refused (False) if the user's sessions were revoked at a later
        version than ``session.user_version``, so a login racing a reset cannot survive it."""
        ...

    async def rotate(
        self, user_id: UUID, session_id: str, spent: str, replacement: str, ttl: int
    ) -> Rotation:
        """Swap the current refresh id ``spent`` for ``replacement``; any other id presented
        for a live session is a reuse, and revokes it."""
        ...

    async def is_active(self, user_id: UUID, session_id: str) -> bool: ...

    async def revoke(self, user_id: UUID, session_id: str) -> None: ...

    async def revoke_all(self, user_id: UUID, *, before_version: int, ttl: int) -> None:
        """Revoke every session of the user, and for ``ttl`` seconds refuse to open sessions
        whose password check read the user at a version below ``before_version``."""
        ...


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class Sessions:
    """Opens, refreshes and closes sessions; its ``user_for`` is the API's authenticator."""

    def __init__(self, tokens: JwtTokens, store: SessionStore) -> None:
        self._tokens = tokens
        self._store = store

    @property
    def _ttl(self) -> int:
        return self._tokens.ttl(Kind.REFRESH)

    async def open(self, user_id: UUID, user_version: int) -> TokenPair:
        """A session opens only if no password change happened after the password was checked."""
        session_id = new_id()
        refresh = self._tokens.issue(Kind.REFRESH, user_id, session_id)
        session = Session(user_id, session_id, refresh.claims.token_id, user_version)
        if not await self._store.open(session, self._ttl):
            raise InvalidCredentials("the password changed during login")
        return self._pair(user_id, session_id, refresh.token)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """A refresh token works once; presenting a spent one revokes its whole session."""
        claims = self._tokens.read(Kind.REFRESH, refresh_token)
        replacement = self._tokens.issue(Kind.REFRESH, claims.user_id, claims.session_id)
        outcome = await self._store.rotate(
            claims.user_id,
            claims.session_id,
            claims.token_id,
            replacement.claims.token_id,
            self._ttl,
        )
        if outcome is Rotation.REUSED:
            log.warning(
                "refresh token reused; session revoked", extra={"user_id": str(claims.user_id)}
            )
        if outcome is not Rotation.ROTATED:
            raise Unauthenticated("refresh token spent, revoked or expired")
        return self._pair(claims.user_id, claims.session_id, replacement.token)

    async def user_for(self, access_token: str) -> UUID:
        """A valid signature is not enough: the token's session must still be open."""
        return (await self._live(access_token)).user_id

    async def close(self, access_token: str) -> None:
        """Logout ends the session: its access and refresh tokens stop working together."""
        claims = await self._live(access_token)
        await self._store.revoke(claims.user_id, claims.session_id)

    async def _live(self, access_token: str) -> Claims:
        claims = self._tokens.read(Kind.ACCESS, access_token)
        if not await self._store.is_active(claims.user_id, claims.session_id):
            raise Unauthenticated("session revoked or expired")
        return claims

    async def revoke_all(self, user_id: UUID, *, before_version: int) -> None:
        await self._store.revoke_all(user_id, before_version=before_version, ttl=self._ttl)

    def _pair(self, user_id: UUID, session_id: str, refresh_token: str) -> TokenPair:
        access = self._tokens.issue(Kind.ACCESS, user_id, session_id)
        return TokenPair(access.token, refresh_token, self._tokens.ttl(Kind.ACCESS))
