"""The integration messages Identity publishes: the relay's side of the contract.

The consumers keep their own, tolerant copy (consumers/messages.py); a contract test checks that
every message the relay builds is one the consumers read. Neither side imports the other, so
the mailer can be deployed, versioned and scaled apart from the service that publishes.
A reset token is never part of a message: the mailer derives it from the request id.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class IntegrationMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: UUID  # stable per event: a re-publication carries the same id
    occurred_at: datetime
    correlation_id: str | None
    traceparent: str | None


class UserRegistered(IntegrationMessage):
    """Someone registered; they get a welcome mail."""

    user_id: UUID
    email: str
    display_name: str


class PasswordResetRequested(IntegrationMessage):
    """A reset was requested for a registered email; the mailer sends the link."""

    user_id: UUID
    email: str
    display_name: str
    request_id: UUID
    expires_at: datetime
