"""Sessions: one per login, each with a chain of single-use refresh tokens.

An access token is only as good as its session: logout, ending a session, refresh-token reuse
and a password reset delete sessions, and every access token of a deleted session stops
working at once. A session ends after an idle timeout (no refresh for so long) and, whatever
its use, at its absolute end (ASVS 3.3.1, 3.3.2): no refresh ever reaches past it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from commands.auth.tokens import Claims, JwtTokens, Kind, new_id
from domain.errors import InvalidCredentials, SessionNotFound, Unauthenticated

log = logging.getLogger("taskledger.auth")

# A User-Agent is kept for the session list only; a longer one is cut.
USER_AGENT_KEPT = 256


@dataclass(frozen=True, slots=True)
class Session:
    user_id: UUID
    session_id: str
    # The one refresh token (its jti) that may be spent next.
    refresh_id: str
    # Version of the User whose password was checked to open the session.
    user_version: int
    # Unix seconds: opened, and the absolute end no refresh goes past.
    created_at: int
    ends_at: int
    client: str = ""
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live session as its user may see it (no token in it)."""

    session_id: str
    created_at: int
    # The last login or refresh: access tokens are checked, not recorded, on every request.
    last_used_at: int
    client: str
    user_agent: str


class Rotation(StrEnum):
    ROTATED = "rotated"
    # The presented refresh token was already spent: the session is now revoked.
    REUSED = "reused"
    # No such session: logged out, revoked, expired, or never opened.
    UNKNOWN = "unknown"


class SessionStore(Protocol):
    """Session state. Every transition is atomic: two concurrent rotations cannot both win."""

    async def open(self, session: Session, idle: int) -> bool:
        """Start a session that lives ``idle`` seconds unless refreshed, never past its end.
        Refused (False) if the user's sessions were revoked at a later version than
        ``session.user_version``, so a login racing a reset cannot survive it."""
        ...

    async def rotate(
        self, user_id: UUID, session_id: str, spent: str, replacement: str, *, now: int, idle: int
    ) -> tuple[Rotation, int]:
        """Swap the current refresh id ``spent`` for ``replacement`` and give the session
        another ``idle`` seconds, never past its end (returned with ROTATED, else 0). Any
        other id presented for a live session is a reuse, and revokes it."""
        ...

    async def is_active(self, user_id: UUID, session_id: str) -> bool: ...

    async def revoke(self, user_id: UUID, session_id: str) -> bool:
        """End one session; False if the user had no such live session."""
        ...

    async def revoke_all(self, user_id: UUID, *, before_version: int, ttl: int) -> None:
        """Revoke every session of the user, and for ``ttl`` seconds refuse to open sessions
        whose password check read the user at a version below ``before_version``."""
        ...

    async def sessions(self, user_id: UUID) -> Sequence[SessionRecord]:
        """The user's live sessions, in no particular order."""
        ...


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class Sessions:
    """Opens, refreshes, lists and ends sessions; its ``user_for`` is the API's authenticator."""

    def __init__(
        self,
        tokens: JwtTokens,
        store: SessionStore,
        *,
        idle_timeout: int,
        lifetime: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = tokens
        self._store = store
        self._idle = idle_timeout
        self._lifetime = lifetime
        self._clock = clock

    async def open(
        self, user_id: UUID, user_version: int, *, client: str = "", user_agent: str = ""
    ) -> TokenPair:
        """A session opens only if no password change happened after the password was checked."""
        # A UUID, as every id the API shows; the session id is no secret (tokens carry it).
        session_id = str(uuid.uuid4())
        now = int(self._clock())
        ends = now + self._lifetime
        refresh = self._tokens.issue(Kind.REFRESH, user_id, session_id, not_after=ends)
        session = Session(
            user_id,
            session_id,
            refresh.claims.token_id,
            user_version,
            now,
            ends,
            client,
            user_agent[:USER_AGENT_KEPT],
        )
        if not await self._store.open(session, self._idle):
            raise InvalidCredentials("the password changed during login")
        return self._pair(user_id, session_id, refresh.token, ends)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """A refresh token works once; presenting a spent one revokes its whole session. The new
        pair lives no longer than the session's absolute end."""
        claims = self._tokens.read(Kind.REFRESH, refresh_token)
        replacement = new_id()
        outcome, ends = await self._store.rotate(
            claims.user_id,
            claims.session_id,
            claims.token_id,
            replacement,
            now=int(self._clock()),
            idle=self._idle,
        )
        if outcome is Rotation.REUSED:
            log.warning(
                "refresh token reused; session revoked", extra={"user_id": str(claims.user_id)}
            )
        if outcome is not Rotation.ROTATED:
            raise Unauthenticated("refresh token spent, revoked or expired")
        refresh = self._tokens.issue(
            Kind.REFRESH, claims.user_id, claims.session_id, token_id=replacement, not_after=ends
        )
        return self._pair(claims.user_id, claims.session_id, refresh.token, ends)

    async def user_for(self, access_token: str) -> UUID:
        """A valid signature is not enough: the token's session must still be open."""
        return (await self._live(access_token)).user_id

    async def close(self, access_token: str) -> None:
        """Logout ends the session: its access and refresh tokens stop working together."""
        claims = await self._live(access_token)
        await self._store.revoke(claims.user_id, claims.session_id)

    async def list(self, access_token: str) -> tuple[str, Sequence[SessionRecord]]:
        """The caller's live sessions, and which of them the caller's own is."""
        claims = await self._live(access_token)
        return claims.session_id, await self._store.sessions(claims.user_id)

    async def end(self, access_token: str, session_id: str) -> None:
        """End one of the caller's sessions; someone else's is not found, as a missing one."""
        claims = await self._live(access_token)
        if not await self._store.revoke(claims.user_id, session_id):
            raise SessionNotFound(session_id)

    async def _live(self, access_token: str) -> Claims:
        claims = self._tokens.read(Kind.ACCESS, access_token)
        if not await self._store.is_active(claims.user_id, claims.session_id):
            raise Unauthenticated("session revoked or expired")
        return claims

    async def revoke_all(self, user_id: UUID, *, before_version: int) -> None:
        # The floor outlives any login that could still be checking the old password.
        await self._store.revoke_all(user_id, before_version=before_version, ttl=self._lifetime)

    def _pair(self, user_id: UUID, session_id: str, refresh_token: str, ends: int) -> TokenPair:
        access = self._tokens.issue(Kind.ACCESS, user_id, session_id, not_after=ends)
        expires_in = min(self._tokens.ttl(Kind.ACCESS), max(0, ends - int(self._clock())))
        return TokenPair(access.token, refresh_token, expires_in)
