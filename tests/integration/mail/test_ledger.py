"""The delivery ledger on real Redis: who may send or park a message; recording through blips."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from consumers.ledger import MailerKeys, RedisDeliveryLedger, StreamEntry
from ops.engines import free_port
from tests.fixtures.projections import eventually


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _ledger(redis: Redis, prefix: str, *, max_attempts: int = 3) -> RedisDeliveryLedger:
    return RedisDeliveryLedger(
        redis, MailerKeys(prefix), lease_ms=10_000, ttl=600, max_attempts=max_attempts
    )


async def test_only_the_first_of_two_deliveries_past_the_attempts_parks_the_message(
    redis: Redis, redis_prefix: str
) -> None:
    ledger = _ledger(redis, redis_prefix, max_attempts=1)
    message = uuid4()
    assert (await ledger.begin(message, "one")).verdict == "go"
    await ledger.postpone(message, "one", 0, "450 busy")

    first = await ledger.begin(message, "one")
    second = await ledger.begin(message, "two")

    assert (first.verdict, first.attempts, first.last_error) == ("exhausted", 1, "450 busy")
    assert second.verdict == "busy"  # left pending; 'done' once the first has parked it
    await ledger.dead_letter(
        StreamEntry(redis_prefix + "s", "1-0", b"{}"),
        kind="welcome",
        message_id=message,
        reason="gave up",
        attempts=1,
    )
    assert (await ledger.begin(message, "two")).verdict == "done"
    assert await redis.xlen(ledger.keys.dead_letters) == 1


async def test_a_parker_that_dies_leaves_the_message_to_the_next_once_its_lease_expires(
    redis: Redis, redis_prefix: str
) -> None:
    ledger = RedisDeliveryLedger(
        redis, MailerKeys(redis_prefix), lease_ms=50, ttl=600, max_attempts=1
    )
    message = uuid4()
    await ledger.begin(message, "one")
    await ledger.postpone(message, "one", 0, "450 busy")
    assert (await ledger.begin(message, "one")).verdict == "exhausted"  # ... and "one" dies
    await eventually(lambda: _gone(redis, ledger.keys.state(message)), within=10)
    assert (await ledger.begin(message, "two")).verdict == "exhausted"


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


class Blip:
    """A TCP proxy to Redis that can be cut: new and open connections fail until restored."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.pipes.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
            self.pipes.discard(task)


async def test_a_redis_blip_after_the_smtp_server_accepted_still_records_the_mail_as_sent(
    redis: Redis, redis_url: str, redis_prefix: str
) -> None:
    blip = Blip(redis.connection_pool.connection_kwargs.get("port", 6379))
    await blip.up()
    # No retries of the client's own: the ledger alone must ride the blip out.
    through = Redis(port=blip.port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    ledger = RedisDeliveryLedger(
        through,
        MailerKeys(redis_prefix),
        lease_ms=10_000,
        ttl=600,
        max_attempts=3,
        sent_retry_delays=(0.2,) * 25,
    )
    stream, group = redis_prefix + "s", MailerKeys(redis_prefix).group
    raw_id = await redis.xadd(stream, {"n": "1"})
    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
    await redis.xgroup_create(stream, group, id="0")
    await redis.xreadgroup(group, "one", {stream: ">"})
    message = uuid4()
    try:
        assert (await ledger.begin(message, "one")).verdict == "go"
        await blip.down()  # the mail is accepted, then Redis goes away for a moment
        restore = asyncio.get_running_loop().call_later(
            0.8, lambda: asyncio.ensure_future(blip.up())
        )
        await ledger.sent(StreamEntry(stream, entry_id, b""), message, "one")
        restore.cancel()
    finally:
        await through.aclose()
        with contextlib.suppress(Exception):
            await blip.down()
    assert await redis.get(ledger.keys.state(message)) == b"sent:one"
    assert (await redis.xpending(stream, group))["pending"] == 0
