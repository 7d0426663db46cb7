"""The outbox relay: publishes Identity's integration messages to the broker."""

from projections.mail_relay.messages import PasswordResetRequested, UserRegistered
from projections.mail_relay.relay import MailRelay, MailRelayProjector

__all__ = ["MailRelay", "MailRelayProjector", "PasswordResetRequested", "UserRegistered"]
