"""The integration messages the mailer reads: its own, tolerant copy of the published contract.

The publisher's schemas live with the relay (projections/mail_relay/messages.py); neither side
imports the other. Unknown fields are ignored, so the publisher may add fields first and the
consumers learn them later. A contract test keeps the two compatible.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class IntegrationMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    message_id: UUID
    occurred_at: datetime
    correlation_id: str | None = None
    traceparent: str | None = None


class UserRegistered(IntegrationMessage):
    """Someone registered: send them a welcome mail."""

    user_id: UUID
    email: str
    display_name: str


class PasswordResetRequested(IntegrationMessage):
    """A reset was requested: mail the token (derived here, never carried) and its link."""

    user_id: UUID
    email: str
    display_name: str
    request_id: UUID
    expires_at: datetime
