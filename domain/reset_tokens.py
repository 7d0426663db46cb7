"""Password-reset tokens, derived rather than stored.

The event store keeps only the request id and its expiry; the token is an HMAC over them
with a server secret, so a dump of the store resets nothing. The write side verifies and
the mailer derives with this one module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from domain.errors import InvalidResetToken

_PAYLOAD = struct.Struct(">16s16sq")


@dataclass(frozen=True, slots=True)
class ResetClaim:
    user_id: UUID
    request_id: UUID
    expires_at: datetime


def reset_key(secret: bytes) -> bytes:
    """The reset-token key, derived from the server secret so it never doubles as the JWT key."""
    return hmac.new(secret, b"reset-token", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    # Only the canonical spelling: the spare low bits of the last character (and stray
    # characters) would otherwise let several strings pass as one token.
    if _b64(data) != text:
        raise ValueError("non-canonical base64")
    return data


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"taskledger-reset-v1" + payload, hashlib.sha256).digest()


def derive_reset_token(secret: bytes, claim: ResetClaim) -> str:
    payload = _PAYLOAD.pack(
        claim.user_id.bytes, claim.request_id.bytes, int(claim.expires_at.timestamp())
    )
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify_reset_token(secret: bytes, token: str, now: datetime) -> ResetClaim:
    """Check the signature and the expiry; whether it is still unused is the User's to say."""
    try:
        payload_text, mac_text = token.split(".")
        payload, mac = _unb64(payload_text), _unb64(mac_text)
        user, request, expires = _PAYLOAD.unpack(payload)
    except (ValueError, struct.error) as exc:
        raise InvalidResetToken("malformed token") from exc
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        raise InvalidResetToken("bad signature")
    claim = ResetClaim(UUID(bytes=user), UUID(bytes=request), datetime.fromtimestamp(expires, UTC))
    if claim.expires_at <= now:
        raise InvalidResetToken("expired")
    return claim
