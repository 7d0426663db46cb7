"""Composes the mailer process: broker, ledger, SMTP adapter and subscribers, from Settings."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from dataclasses import dataclass

from faststream import FastStream
from faststream.redis import RedisBroker
from faststream.specification import AsyncAPI
from faststream.specification.base import Specification
from redis.asyncio import Redis

from consumers.app import MailerOptions, mailer_router, mailer_streams
from consumers.dead_letters import RedisDeadLetters
from consumers.delivery import MailDelivery
from consumers.ledger import MailerKeys, RedisDeliveryLedger
from consumers.mail import InMemoryMailer, Mailer
from consumers.retry import RetryPolicy
from consumers.smtp import SmtpMailer
from consumers.streams import RedisStreamKeeper
from domain.reset_tokens import reset_key
from ops.bootstrap import redis_client
from ops.messaging import build_broker, integration_stream_prefix
from ops.settings import InvalidSetting, Settings

LEASE_MARGIN = 5.0  # seconds a lease outlives the longest SMTP conversation
TRIM_EVERY = 60.0  # seconds between trims of the acknowledged history of the mail streams


def consumer_name() -> str:
    """Unique per process: a restarted mailer must not inherit a dead one's pending entries."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def smtp_mailer(settings: Settings) -> SmtpMailer:
    if settings.smtp_url is None:
        raise InvalidSetting("invalid setting TASKLEDGER_SMTP_URL: not set (taskledger up sets it)")
    return SmtpMailer.from_url(settings.smtp_url, timeout=settings.mail_send_timeout)


def ledger(settings: Settings, redis: Redis) -> RedisDeliveryLedger:
    return RedisDeliveryLedger(
        redis=redis,
        keys=MailerKeys(settings.redis_prefix),
        lease_ms=int((settings.mail_send_timeout + LEASE_MARGIN) * 1000),
        ttl=settings.mail_dedup_ttl,
        max_attempts=settings.mail_max_attempts,
    )


def dead_letters(settings: Settings, redis: Redis) -> RedisDeadLetters:
    return RedisDeadLetters(redis, MailerKeys(settings.redis_prefix))


@dataclass(frozen=True, slots=True)
class MailerProcess:
    app: FastStream
    broker: RedisBroker
    redis: Redis  # the ledger's own client
    consumer: str

    async def start(self) -> None:
        """Run it in the current event loop (``app.run`` does this, and waits, for a process)."""
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()


def build_mailer(
    settings: Settings, *, consumer: str | None = None, mailer: Mailer | None = None
) -> MailerProcess:
    """Nothing connects here: the broker connects when the app (or ``start``) runs."""
    name = consumer or consumer_name()
    redis = redis_client(settings)
    delivery = MailDelivery(
        ledger=ledger(settings, redis),
        mailer=mailer or smtp_mailer(settings),
        policy=RetryPolicy(
            max_attempts=settings.mail_max_attempts,
            base=settings.mail_retry_base,
            cap=settings.mail_retry_max,
        ),
        sender=settings.mail_from,
        reset_key=reset_key(settings.secret()),
        reset_url_base=settings.reset_url_base,
        owner=name,
        in_flight=asyncio.Semaphore(settings.mail_concurrency),
    )
    broker = _mailer_broker(settings, delivery)
    keeper = RedisStreamKeeper(
        redis,
        MailerKeys(settings.redis_prefix).group,
        list(mailer_streams(integration_stream_prefix(settings))),
    )
    housekeeping: list[asyncio.Task[None]] = []

    async def start_housekeeping() -> None:
        housekeeping.append(asyncio.create_task(keeper.keep(TRIM_EVERY), name="mail-trim"))

    async def stop_housekeeping() -> None:
        for task in housekeeping:
            task.cancel()
        await asyncio.gather(*housekeeping, return_exceptions=True)

    async def close_ledger() -> None:
        await redis.aclose()

    app = FastStream(
        broker,
        logger=logging.getLogger("taskledger.faststream"),
        # Groups first, at the streams' start: nothing published before any mailer ran is lost.
        on_startup=[keeper.ensure_groups],
        after_startup=[start_housekeeping],
        on_shutdown=[stop_housekeeping],
        after_shutdown=[close_ledger],
        specification=asyncapi(broker),
    )
    return MailerProcess(app=app, broker=broker, redis=redis, consumer=name)


def _mailer_broker(settings: Settings, delivery: MailDelivery) -> RedisBroker:
    options = MailerOptions(
        stream_prefix=integration_stream_prefix(settings),
        consumer=delivery.owner,
        concurrency=settings.mail_concurrency,
        reclaim_idle_ms=int(settings.mail_reclaim_idle * 1000),
    )
    broker = build_broker(
        settings,
        # On stop, mails in flight finish (or time out) before the process exits.
        graceful_timeout=settings.mail_send_timeout + LEASE_MARGIN,
        logger=logging.getLogger("taskledger.faststream"),
    )
    broker.include_router(mailer_router(delivery, options))
    return broker


def asyncapi(broker: RedisBroker) -> AsyncAPI:
    return AsyncAPI(
        broker,
        title="taskledger mail",
        version="1",
        description="Integration messages Identity publishes on Redis Streams (one stream per "
        "message type; each entry's __data__ field is plain JSON: {headers, data}) and the "
        "mailer consumes in one consumer group.",
    )


def asyncapi_document(settings: Settings) -> Specification:
    """The mailer's subscribers as AsyncAPI 3.0; builds them, connects to nothing."""
    if settings.redis_url is None:  # the document names a server; none is contacted
        settings = settings.model_copy(update={"redis_url": "redis://localhost:6379/0"})
    redis = redis_client(settings)
    shapes_only = MailDelivery(
        ledger=ledger(settings, redis),
        mailer=InMemoryMailer(),
        policy=RetryPolicy(max_attempts=1, base=1, cap=1),
        sender=settings.mail_from,
        reset_key=b"",  # no mail is ever sent from here
        reset_url_base=settings.reset_url_base,
        owner="asyncapi",
    )
    return asyncapi(_mailer_broker(settings, shapes_only)).to_specification()
