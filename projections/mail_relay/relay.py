"""The relay projection: the event store is the outbox, Redis Streams the broker.

Each handled event becomes one integration message on the stream named after the message type
(``{stream_prefix}{MessageType}``), published with a message id derived from the event's
identity, so a re-applied batch re-publishes the same ids and the consumers de-duplicate.
Events older than the window are not (re)published while the relay replays from position 0 (a
rebuild, a first start): it rebuilds the address book without mailing anyone twice (the
consumers' de-dup memory outlives the window). Resuming from a checkpoint, it publishes
whatever it has not yet, however old: a relay down for long delays mail, it does not drop it.

Streams, address book and checkpoint all live in Redis (``RedisCheckpointStore``), the
checkpoint written after the data it covers: if Redis loses recent writes, it loses the
checkpoint with them, and the relay publishes again what was lost (the consumers de-duplicate).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from faststream.redis import RedisBroker
from redis.asyncio import Redis

from projections.checkpoints import CheckpointStore, RedisCheckpointStore
from projections.envelope import Envelope, redis_namespace
from projections.mail_relay.contacts import Contact, ContactChange, Contacts, RedisContacts
from projections.mail_relay.messages import (
    IntegrationMessage,
    PasswordResetRequested,
    UserRegistered,
)
from projections.mail_relay.metrics import (
    EXPIRED,
    MAIL_SKIPPED,
    RESET_KIND,
    TOO_OLD,
    WELCOME_KIND,
)
from projections.upstreams import IDENTITY, REGISTERED, RENAMED, RESET_REQUESTED

NAME = "mail_relay"
VERSION = 1
MESSAGE_NAMESPACE = uuid5(NAMESPACE_URL, "https://taskledger.dev/integration-message")

log = logging.getLogger("taskledger.mail_relay")

TOPICS = (REGISTERED, RESET_REQUESTED, RENAMED)


class UnknownRecipientError(LookupError):
    """A reset for a user whose registration the relay never saw: the event is parked."""


def message_id(envelope: Envelope) -> UUID:
    """The same event always yields the same id, whatever its position or generation."""
    return uuid5(
        MESSAGE_NAMESPACE,
        f"{envelope.application}:{envelope.originator_id}:{envelope.originator_version}",
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(slots=True)
class MailRelayProjector:
    broker: RedisBroker  # connected by the relay; used to encode and publish
    redis: Redis
    contacts: Contacts
    stream_prefix: str
    window: timedelta
    checkpoints: CheckpointStore | None = None  # where this generation resumes from
    generation: int = 1
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    name: str = NAME
    version: int = VERSION
    upstreams: Sequence[str] = (IDENTITY,)
    topics: Sequence[str] = TOPICS
    # Replaying history from position 0: the window applies. Until ``start`` knows better, or
    # the replay reaches events within the window, assume so (never mail the whole history).
    replaying: bool = True

    async def start(self) -> None:
        # Sets FastStream's serializer up. Entries go through ``redis``'s pipeline, so the
        # broker's own (lazy) connection pool never opens a socket.
        await self.broker.connect()
        if self.checkpoints is not None:
            resumed = await self.checkpoints.position(self.name, self.generation, IDENTITY)
            self.replaying = resumed == 0

    async def apply(self, batch: Sequence[Envelope]) -> None:
        """Publish what happened within the window; record every address change, in order."""
        wanted = [env.originator_id for env in batch if env.topic != REGISTERED]
        book: dict[UUID, Contact] = dict(await self.contacts.lookup(list(dict.fromkeys(wanted))))
        changes: list[ContactChange] = []
        outgoing: list[IntegrationMessage] = []
        now = self.clock()
        for env in batch:
            user_id, event = env.originator_id, env.event
            if env.topic == REGISTERED:
                book[user_id] = Contact(event.email, event.display_name)
                changes.append(
                    ContactChange(
                        user_id,
                        env.originator_version,
                        email=event.email,
                        display_name=event.display_name,
                    )
                )
                if self._worth_mailing(env, now, WELCOME_KIND):
                    outgoing.append(
                        UserRegistered(
                            user_id=user_id,
                            email=event.email,
                            display_name=event.display_name,
                            **self._common(env),
                        )
                    )
            elif env.topic == RENAMED:
                if user_id in book:
                    book[user_id] = Contact(book[user_id].email, event.display_name)
                changes.append(
                    ContactChange(user_id, env.originator_version, display_name=event.display_name)
                )
            elif env.topic == RESET_REQUESTED:
                expires_at = _aware(datetime.fromisoformat(event.expires_at))
                if not self._worth_mailing(env, now, RESET_KIND, expires_at):
                    continue
                contact = book.get(user_id)
                if contact is None:
                    raise UnknownRecipientError(f"no registration seen for user {user_id}")
                outgoing.append(
                    PasswordResetRequested(
                        user_id=user_id,
                        email=contact.email,
                        display_name=contact.display_name,
                        request_id=event.request_id,
                        expires_at=expires_at,
                        **self._common(env),
                    )
                )
        await self._commit(changes, outgoing)
        if self.replaying and batch and _aware(batch[-1].timestamp) > now - self.window:
            self.replaying = False  # caught up with the window: from here on, the live tail

    def _worth_mailing(
        self, env: Envelope, now: datetime, kind: str, expires_at: datetime | None = None
    ) -> bool:
        """Not past the window (when replaying), nor a dead link; a skip leaves a trace."""
        if self.replaying and _aware(env.timestamp) <= now - self.window:
            reason = TOO_OLD
        elif expires_at is not None and expires_at <= now:
            reason = EXPIRED
        else:
            return True
        MAIL_SKIPPED.labels(kind, reason).inc()
        # The user id, never the address or anything a token could be derived from.
        log.warning(
            "%s mail not published (%s): user %s, event at position %d",
            kind,
            reason,
            env.originator_id,
            env.position,
            extra={"mail_kind": kind, "skip_reason": reason, "user_id": str(env.originator_id)},
        )
        return False

    @staticmethod
    def _common(env: Envelope) -> dict[str, Any]:
        return {
            "message_id": message_id(env),
            "occurred_at": _aware(env.timestamp),
            "correlation_id": env.meta["correlation_id"] if env.meta else None,
            "traceparent": env.meta["traceparent"] if env.meta else None,
        }

    async def _commit(
        self, changes: Sequence[ContactChange], outgoing: Sequence[IntegrationMessage]
    ) -> None:
        if not changes and not outgoing:
            return
        # One round trip, one transaction: the address book and the messages of a batch.
        pipe = self.redis.pipeline(transaction=True)
        await self.contacts.record(pipe, changes)
        for message in outgoing:
            await self.broker.publish(
                message,
                stream=self.stream_prefix + type(message).__name__,
                headers={"message_id": str(message.message_id)},
                correlation_id=message.correlation_id,
                pipeline=pipe,
            )
        await pipe.execute()


@dataclass(slots=True)
class MailRelay:
    """The relay as a projection: name, upstream, topics, and one projector per generation.

    Generation N keeps its address book under ``{redis_prefix}rm:mail_relay:vN:``, and its
    checkpoints on the same Redis (``OwnCheckpoints``), beside the streams they cover.
    """

    broker: RedisBroker
    redis: Redis
    stream_prefix: str
    redis_prefix: str
    window: timedelta
    name: str = NAME
    upstreams: Sequence[str] = (IDENTITY,)
    topics: Sequence[str] = TOPICS
    _checkpoints: RedisCheckpointStore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._checkpoints = RedisCheckpointStore(self.redis, self.redis_prefix)

    @property
    def checkpoints(self) -> RedisCheckpointStore:
        """On the Redis of the streams: if it loses recent entries, their checkpoint goes too."""
        return self._checkpoints

    def projector(self, generation: int) -> MailRelayProjector:
        return MailRelayProjector(
            broker=self.broker,
            redis=self.redis,
            contacts=self._contacts(generation),
            stream_prefix=self.stream_prefix,
            window=self.window,
            checkpoints=self._checkpoints,
            generation=generation,
        )

    async def drop(self, generation: int) -> None:
        await self._contacts(generation).drop()

    def _contacts(self, generation: int) -> RedisContacts:
        return RedisContacts(self.redis, redis_namespace(self.redis_prefix, NAME, generation))


__all__ = ["TOPICS", "MailRelay", "MailRelayProjector", "UnknownRecipientError", "message_id"]
