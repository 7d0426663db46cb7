"""What the mailer remembers in Redis, so each message is mailed once and none is lost.

Per message id (kept ``ttl`` seconds, longer than any retry horizon or re-publication window):

- ``{prefix}mailer:state:{id}``: ``sending:<owner>`` while one mailer holds the lease (it
  expires, so a crashed mailer's message is sent again later), then ``sent:<owner>`` once the
  SMTP server accepted it, or ``dead`` once it was parked. Only the lease holder sends.
  ``parking:<owner>`` is the lease of the one mailer parking a message past its attempts.
- ``{prefix}mailer:attempts:{id}``: attempts started, the earliest next attempt, last error.

A stream entry is acknowledged only together with the final state (one MULTI), so a crash at
any point leaves the entry pending, to be claimed again; the state then says what is left to do.
The one window left is a crash after the SMTP server accepted a mail and before ``sent`` is
recorded: that mail is sent again once the lease expires (at-least-once at the SMTP edge).
A Redis blip in that window is not a crash: ``sent`` is tried again for a few seconds, well
within the lease, before the mailer gives up.

Scripts are registered once (EVALSHA, reloaded on NOSCRIPT). They touch keys of one message id
only, but ``sent`` and ``dead_letter`` also touch the streams, in one MULTI: Redis Cluster
(one hash slot per transaction) is not supported; standalone or Sentinel is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, cast
from uuid import UUID

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("taskledger.mailer")

Verdict = Literal["go", "done", "busy", "wait", "exhausted"]

# Server time (TIME), not the mailers' clocks: every mailer agrees on when a retry is due.
_BEGIN = """
local state = redis.call('GET', KEYS[1])
if state == 'dead' or string.sub(state or '', 1, 5) == 'sent:' then return {'done', 0, ''} end
if state then return {'busy', 0, ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local next_at = tonumber(redis.call('HGET', KEYS[2], 'next_at') or '0')
if next_at > now then return {'wait', 0, ''} end
local count = redis.call('HINCRBY', KEYS[2], 'count', 1)
redis.call('EXPIRE', KEYS[2], ARGV[3])
local last_error = redis.call('HGET', KEYS[2], 'last_error') or ''
if count > tonumber(ARGV[4]) then
  -- A lease for the one caller that parks it: a concurrent delivery of the same id is 'busy'
  -- (then 'done' once parked); if this caller dies first, the lease expires and the next parks.
  redis.call('SET', KEYS[1], 'parking:' .. ARGV[1], 'PX', ARGV[2])
  return {'exhausted', count - 1, last_error}
end
redis.call('SET', KEYS[1], 'sending:' .. ARGV[1], 'PX', ARGV[2])
return {'go', count, last_error}
"""

_POSTPONE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('GET', KEYS[1]) == 'sending:' .. ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[2], 'next_at', now + tonumber(ARGV[2]), 'last_error', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    attempts: int  # "go": this attempt's number; "exhausted": attempts made
    last_error: str


DATA_FIELD = b"__data__"  # the stream entry's field FastStream keeps a message's bytes in


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One delivery of a message: where it sits, and its raw bytes (for the dead letters)."""

    stream: str
    entry_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MailerKeys:
    prefix: str  # Settings.redis_prefix

    @property
    def group(self) -> str:
        return f"{self.prefix}mailer"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}mailer:dead-letters"

    def state(self, message_id: UUID | str) -> str:
        return f"{self.prefix}mailer:state:{message_id}"

    def attempts(self, message_id: UUID | str) -> str:
        return f"{self.prefix}mailer:attempts:{message_id}"


# Seconds between tries to record ``sent`` while Redis is unreachable: about 3 s in all, less
# than the lease's margin over the SMTP timeout (ops/mailer.py LEASE_MARGIN), so no other mailer
# may take the message meanwhile.
SENT_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.5)


@dataclass(frozen=True, slots=True)
class RedisDeliveryLedger:
    redis: Redis
    keys: MailerKeys
    lease_ms: int  # longer than one whole SMTP conversation may take
    ttl: int  # seconds the outcome of a message is remembered
    max_attempts: int
    sent_retry_delays: Sequence[float] = SENT_RETRY_DELAYS
    _begin: AsyncScript = field(init=False, repr=False)
    _postpone: AsyncScript = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # No I/O: the scripts are loaded on first use, and again if the server forgot them.
        object.__setattr__(self, "_begin", self.redis.register_script(_BEGIN))
        object.__setattr__(self, "_postpone", self.redis.register_script(_POSTPONE))

    async def begin(self, message_id: UUID, owner: str) -> Decision:
        """Take the lease and count an attempt, unless the message is done, busy or not due."""
        verdict, attempts, last_error = await self._begin(
            keys=[self.keys.state(message_id), self.keys.attempts(message_id)],
            args=[owner, self.lease_ms, self.ttl, self.max_attempts],
        )
        return Decision(cast(Verdict, _text(verdict)), int(attempts), _text(last_error))

    async def sent(self, entry: StreamEntry, message_id: UUID, owner: str) -> None:
        """Record an accepted mail; a Redis blip here would mean a second mail, so insist."""
        for delay in (*self.sent_retry_delays, None):
            try:
                # Every command here is idempotent: a MULTI that did run is safe to run again.
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.set(self.keys.state(message_id), f"sent:{owner}", ex=self.ttl)
                    pipe.delete(self.keys.attempts(message_id))
                    pipe.xack(entry.stream, self.keys.group, entry.entry_id)
                    await pipe.execute()
                return
            except (RedisConnectionError, RedisTimeoutError) as error:
                if delay is None:
                    raise
                log.warning("recording a sent mail failed, trying again in %.2fs: %s", delay, error)
                await asyncio.sleep(delay)

    async def postpone(self, message_id: UUID, owner: str, delay: float, error: str) -> None:
        """Release the lease; no mailer attempts it again before ``delay`` seconds."""
        await self._postpone(
            keys=[self.keys.state(message_id), self.keys.attempts(message_id)],
            args=[owner, int(delay * 1000), error[:500], self.ttl],
        )

    async def duplicate(self, entry: StreamEntry) -> None:
        """Another delivery of a message already sent or parked: just let it go."""
        await self.redis.xack(entry.stream, self.keys.group, entry.entry_id)

    async def dead_letter(
        self,
        entry: StreamEntry,
        *,
        kind: str,
        message_id: UUID | None,
        reason: str,
        attempts: int,
    ) -> None:
        """Park the message with why and how often it failed; its entry is done with."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.dead_letters,
                {
                    "stream": entry.stream,
                    "entry_id": entry.entry_id,
                    "kind": kind,
                    "message_id": str(message_id or ""),
                    "reason": reason[:1000],
                    "attempts": attempts,
                    "failed_at": datetime.now(UTC).isoformat(),
                    "data": entry.data,
                },
            )
            pipe.xack(entry.stream, self.keys.group, entry.entry_id)
            if message_id is not None:
                pipe.set(self.keys.state(message_id), "dead", ex=self.ttl)
                pipe.delete(self.keys.attempts(message_id))
            await pipe.execute()


def _text(value: bytes | str | int) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
