"""The mailer as FastStream subscribers: one consumer group per stream, shared by all mailers.

Each message type has its own stream (``{stream_prefix}{MessageType}``) and two subscribers:

- the reader (XREADGROUP ``>``): new entries, each to exactly one mailer of the group;
- the reclaimer (XAUTOCLAIM, ``min_idle_time``): entries left pending — by a mailer that
  crashed, or on purpose, to be retried after a back-off — are claimed again once idle long
  enough, by whichever mailer asks first.

On Redis Streams FastStream's ``nack()`` does nothing, so every acknowledgement is ours
(``AckPolicy.MANUAL``): the ledger acknowledges an entry together with its final state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from faststream import AckPolicy, BaseMiddleware
from faststream.message import StreamMessage
from faststream.redis import RedisRouter, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from pydantic import BaseModel, ValidationError

from consumers import metrics
from consumers.delivery import MailDelivery
from consumers.ledger import DATA_FIELD, StreamEntry
from consumers.letters import RESET_KIND, WELCOME_KIND
from consumers.messages import PasswordResetRequested, UserRegistered


@dataclass(frozen=True, slots=True)
class MailerOptions:
    stream_prefix: str  # streams are "{stream_prefix}{MessageType}"
    consumer: str  # this process's name in the group; unique per process
    concurrency: int  # mails in flight per subscriber
    reclaim_idle_ms: int  # pending at least this long: may be claimed again
    block_ms: int = 1000  # XREADGROUP BLOCK: how long one read waits for news


def stream_entry(message: StreamMessage[Any]) -> StreamEntry:
    raw = message.raw_message
    data: Mapping[bytes, bytes] = raw["data"]
    return StreamEntry(
        stream=raw["channel"],
        entry_id=raw["message_ids"][0].decode(),
        data=data.get(DATA_FIELD, b""),
    )


def mailer_streams(stream_prefix: str) -> dict[str, str]:
    """The streams the mailer reads, each with the kind of mail its messages become."""
    return {
        stream_prefix + PasswordResetRequested.__name__: RESET_KIND,
        stream_prefix + UserRegistered.__name__: WELCOME_KIND,
    }


def mailer_router(delivery: MailDelivery, options: MailerOptions) -> RedisRouter:
    """Every subscriber of the mailer, ready for ``broker.include_router``."""
    group = delivery.ledger.keys.group
    reset_stream = options.stream_prefix + PasswordResetRequested.__name__
    welcome_stream = options.stream_prefix + UserRegistered.__name__
    kinds = mailer_streams(options.stream_prefix)
    schemas: dict[str, type[BaseModel]] = {
        reset_stream: PasswordResetRequested,
        welcome_stream: UserRegistered,
    }
    metrics.announce(list(kinds.values()))

    class ParkMalformed(BaseMiddleware):
        """A message that does not match its schema would fail forever: park it at once."""

        async def consume_scope(
            self,
            call_next: Callable[[StreamMessage[Any]], Awaitable[Any]],
            msg: StreamMessage[Any],
        ) -> Any:
            # Only the body's own validation, here, means "malformed": a ValidationError from
            # anywhere later (building the letter, say) is our bug, and must not park good mail.
            entry = stream_entry(msg)
            schema = schemas.get(entry.stream)
            if schema is not None:
                try:
                    schema.model_validate(await msg.decode())
                except ValidationError as error:
                    await delivery.malformed(kinds[entry.stream], entry, str(error))
                    return None
            return await call_next(msg)

    router = RedisRouter(middlewares=[ParkMalformed])

    def subscribe(stream: str, title: str) -> Callable[[Any], Any]:
        """Reader and reclaimer of ``stream``; the AsyncAPI text is the handler's docstring."""
        reader = router.subscriber(
            stream=StreamSub(
                stream,
                group=group,
                consumer=options.consumer,
                polling_interval=options.block_ms,
                # No hoarding: what one mailer has read, the others cannot take until it idles.
                max_records=options.concurrency,
            ),
            ack_policy=AckPolicy.MANUAL,
            max_workers=options.concurrency,
            title=title,
        )
        reclaimer = router.subscriber(
            stream=StreamSub(
                stream,
                group=group,
                consumer=options.consumer,
                min_idle_time=options.reclaim_idle_ms,
                polling_interval=options.reclaim_idle_ms // 2 or 1,
            ),
            ack_policy=AckPolicy.MANUAL,
            max_workers=options.concurrency,
            title=f"{title}:reclaim",
            include_in_schema=False,
        )

        def both(handler: Any) -> Any:
            return reclaimer(reader(handler))

        return both

    @subscribe(reset_stream, "mailer:PasswordResetRequested")
    async def on_password_reset(body: PasswordResetRequested, message: RedisStreamMessage) -> None:
        """Mails the reset link once per request; the mailer derives the token, none travels."""
        await delivery.password_reset(body, stream_entry(message))

    @subscribe(welcome_stream, "mailer:UserRegistered")
    async def on_registered(body: UserRegistered, message: RedisStreamMessage) -> None:
        """Mails a welcome once per registration."""
        await delivery.welcome(body, stream_entry(message))

    return router
