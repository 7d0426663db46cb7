"""Decoding a write-side application's events without importing the write side.

The handle on a store is projections.log.UpstreamReader, the one the projector reads through.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import AggregateEvent

# The catalogue's names (ARCHITECTURE.md) where "Aggregate" + "Event" would read oddly.
_CATALOGUE = {
    "User.PasswordResetRequested": "PasswordResetRequested",
    "User.PasswordChanged": "PasswordChanged",
    "User.PasswordRehashed": "PasswordRehashed",
}


def stored_events(log: Application[UUID], originator_id: UUID) -> Iterator[AggregateEvent]:
    """One aggregate's events, oldest first, decoded by the domain's own classes."""
    for event in log.events.get(originator_id):
        if isinstance(event, AggregateEvent):
            yield event


def event_type(event: Any) -> str:
    """ "Task.Created" -> "TaskCreated": the event catalogue's name for a decoded event."""
    qualname: str = type(event).__qualname__
    return _CATALOGUE.get(qualname, qualname.replace(".", ""))


def actor_of(event: Any) -> str | None:
    meta = getattr(event, "meta", None)
    if not isinstance(meta, Mapping):
        return None
    actor = meta.get("actor_id")
    return None if actor is None else str(actor)
