"""Composes the mail relay projection for the projector process (see ops/projections.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from ops.messaging import build_broker, integration_stream_prefix
from ops.settings import InvalidSetting, Settings
from projections.mail_relay import MailRelay

if TYPE_CHECKING:
    from ops.projections import ReadClients


def mail_relay(settings: Settings, clients: ReadClients) -> MailRelay:
    """The relay publishes through this loop's Redis client, in one pipeline per batch."""
    if clients.redis is None:
        raise InvalidSetting("invalid setting TASKLEDGER_REDIS_URL: not set")
    return MailRelay(
        broker=build_broker(settings),
        redis=clients.redis,
        stream_prefix=integration_stream_prefix(settings),
        redis_prefix=settings.redis_prefix,
        window=timedelta(seconds=settings.mail_relay_window),
    )
