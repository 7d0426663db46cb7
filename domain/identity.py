"""Identity aggregates: the User, and the email index that makes emails unique in the store."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.meta import Meta

EMAIL_NAMESPACE = uuid5(NAMESPACE_URL, "https://taskledger.dev/email-index")


def normalise_email(email: str) -> str:
    """The one spelling of an address, for its index, its rate limits and its lookups: any case,
    surrounding blanks, and either Unicode form of an accented letter name one address."""
    return unicodedata.normalize("NFC", email.strip().lower())


class User(Aggregate):
    """A registered person. Holds an argon2 hash (never a password) and pending reset requests."""

    class Registered(Aggregate.Created):
        email: str
        display_name: str
        password_hash: str
        meta: Meta

    @event(Registered)
    def __init__(self, email: str, display_name: str, password_hash: str, meta: Meta) -> None:
        self.email = email
        self.display_name = display_name
        self.password_hash = password_hash
        # request id -> ISO expiry; a reset may use one only while it is listed here.
        self.pending_resets: dict[str, str] = {}

    class PasswordResetRequested(Aggregate.Event):
        request_id: UUID
        expires_at: str
        meta: Meta

        def apply(self, aggregate: Any) -> None:
            # Runs after the method below. Requests already expired when this one was made can
            # never be used again: drop them, judged by this event's own time (not the clock),
            # so every replay keeps the same ones and the dict stays as small as the TTL allows.
            user: User = aggregate
            user.pending_resets = {
                request: expires
                for request, expires in user.pending_resets.items()
                if datetime.fromisoformat(expires) > self.timestamp
            }
            super().apply(aggregate)

    @event(PasswordResetRequested)
    def request_password_reset(self, request_id: UUID, expires_at: str, meta: Meta) -> None:
        self.pending_resets[str(request_id)] = expires_at

    @event("PasswordChanged")
    def change_password(
        self, password_hash: str, reset_request_id: UUID | None, meta: Meta
    ) -> None:
        self.password_hash = password_hash
        # Any password change spends every outstanding reset request.
        self.pending_resets = {}

    @event("PasswordRehashed")
    def rehash_password(self, password_hash: str, meta: Meta) -> None:
        # The same password under a costlier hash: not a change, so pending resets stay.
        self.password_hash = password_hash

    @event("Renamed")
    def rename(self, display_name: str, meta: Meta) -> None:
        self.display_name = display_name

    def reset_is_pending(self, request_id: UUID, now: datetime) -> bool:
        expires = self.pending_resets.get(str(request_id))
        return expires is not None and datetime.fromisoformat(expires) > now


class EmailIndex(Aggregate):
    """Saved with its User in one transaction; its deterministic id makes a duplicate conflict."""

    class Claimed(Aggregate.Created):
        email: str
        user_id: UUID

    @event(Claimed)
    def __init__(self, email: str, user_id: UUID) -> None:
        self.email = email
        self.user_id = user_id

    @staticmethod
    def create_id(email: str) -> UUID:
        return uuid5(EMAIL_NAMESPACE, normalise_email(email))
