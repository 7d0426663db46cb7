"""Metadata every event carries: who acted, which request caused it, its trace."""

from __future__ import annotations

from typing import TypedDict


class Meta(TypedDict):
    """The acting user, the correlation id (the HTTP request id) and the W3C traceparent.

    A plain mapping, so events serialise without custom transcoding and any reader of the
    store (history, export, the relay) decodes it. The event's own ``timestamp`` is the time.
    """

    actor_id: str | None
    correlation_id: str
    traceparent: str | None


def meta(actor_id: object | None, correlation_id: str, traceparent: str | None = None) -> Meta:
    return Meta(
        actor_id=None if actor_id is None else str(actor_id),
        correlation_id=correlation_id,
        traceparent=traceparent,
    )


SYSTEM = meta(None, "system")
