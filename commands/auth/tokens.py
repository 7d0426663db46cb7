"""Signed JWTs for access and refresh; what they still allow is decided by the session store."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

import jwt

from domain.errors import Unauthenticated

ISSUER = "taskledger"
_REQUIRED = ["exp", "iat", "jti", "sub", "sid", "typ", "iss"]
# Tokens whose signature and claims already checked out, remembered so that the next request
# with the same token skips the decoding (a tenth of a command's CPU); expiry is still checked
# every time. Bounded: when full it is emptied, and the tokens in use are verified again.
VERIFIED_TOKENS_KEPT = 10_000


class Kind(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: UUID
    session_id: str
    token_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    claims: Claims


def signing_key(secret: bytes) -> bytes:
    """The JWT key, derived so that the server secret never signs anything itself."""
    # SHA-512 gives 64 bytes: long enough for every pinned HMAC algorithm up to HS512.
    return hmac.new(secret, b"jwt-signing", hashlib.sha512).digest()


def new_id() -> str:
    return secrets.token_urlsafe(16)


class JwtTokens:
    """Issues and reads tokens with one pinned algorithm; anything else is refused."""

    def __init__(
        self,
        key: bytes,
        *,
        algorithm: str,
        access_ttl: int,
        refresh_ttl: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._algorithm = algorithm
        self._ttl = {Kind.ACCESS: access_ttl, Kind.REFRESH: refresh_ttl}
        self._clock = clock
        self._verified: dict[tuple[Kind, str], tuple[Claims, float]] = {}

    def ttl(self, kind: Kind) -> int:
        return self._ttl[kind]

    def issue(
        self,
        kind: Kind,
        user_id: UUID,
        session_id: str,
        *,
        token_id: str | None = None,
        not_after: int | None = None,
    ) -> Issued:
        """A token of the kind's lifetime, cut short at ``not_after`` (the session's end)."""
        now = int(self._clock())
        expires = now + self._ttl[kind]
        if not_after is not None:
            expires = min(expires, not_after)
        claims = Claims(
            user_id, session_id, token_id or new_id(), datetime.fromtimestamp(expires, UTC)
        )
        payload = {
            "iss": ISSUER,
            "typ": str(kind),
            "sub": str(user_id),
            "sid": session_id,
            "jti": claims.token_id,
            "iat": now,
            "exp": expires,
        }
        return Issued(jwt.encode(payload, self._key, algorithm=self._algorithm), claims)

    def read(self, kind: Kind, token: str) -> Claims:
        """Signature, algorithm, issuer, expiry and kind must all check out, or Unauthenticated."""
        verified = self._verified.get((kind, token))
        if verified is not None:
            claims, expires = verified
            # The same test PyJWT makes (against the real time, as it does): valid while exp > now.
            if expires > time.time():
                return claims
            self._verified.pop((kind, token), None)
            raise Unauthenticated(f"invalid {kind} token")
        claims = self._decode(kind, token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.clear()
        self._verified[(kind, token)] = (claims, claims.expires_at.timestamp())
        return claims

    def _decode(self, kind: Kind, token: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                issuer=ISSUER,
                options={"require": _REQUIRED},
            )
            if payload["typ"] != kind:
                raise Unauthenticated(f"not an {kind} token")
            return Claims(
                UUID(str(payload["sub"])),
                str(payload["sid"]),
                str(payload["jti"]),
                datetime.fromtimestamp(int(payload["exp"]), UTC),
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"invalid {kind} token") from exc
