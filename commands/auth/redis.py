"""Redis adapters for sessions and rate limits (redis.asyncio). Every key is under the prefix.

A user's session keys share one hash tag, ``{<user id>}``, so the scripts that touch several
of them stay on one slot under Redis Cluster.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from uuid import UUID

from redis.asyncio import Redis

from commands.auth.rate_limits import Limit, Slowdown
from commands.auth.sessions import Rotation, Session, SessionRecord
from domain.errors import RateLimited

# KEYS: session, user's session set, user's floor. ARGV: refresh id, ttl, user version, sid,
# created, ends, client, user agent. The set lives as long as its longest-lived session.
_OPEN = """
local floor = tonumber(redis.call('GET', KEYS[3]) or '-1')
if tonumber(ARGV[3]) < floor then return 0 end
redis.call('HSET', KEYS[1], 'refresh', ARGV[1], 'created', ARGV[5], 'used', ARGV[5],
  'ends', ARGV[6], 'client', ARGV[7], 'agent', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: session, user's session set. ARGV: spent id, replacement id, now, sid, idle.
# Returns {outcome, the session's end}. A session opened before sessions had an end gets one
# an idle timeout away.
_ROTATE = """
local current = redis.call('HGET', KEYS[1], 'refresh')
if not current then return {0, 0} end
if current ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[4])
  return {-1, 0}
end
local now = tonumber(ARGV[3])
local ends = tonumber(redis.call('HGET', KEYS[1], 'ends') or (now + tonumber(ARGV[5])))
local ttl = math.min(tonumber(ARGV[5]), ends - now)
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[4])
  return {0, 0}
end
redis.call('HSET', KEYS[1], 'refresh', ARGV[2], 'used', ARGV[3], 'ends', ends)
redis.call('EXPIRE', KEYS[1], ttl)
if redis.call('TTL', KEYS[2]) < ttl then redis.call('EXPIRE', KEYS[2], ttl) end
return {1, ends}
"""

# KEYS: user's session set, user's floor. ARGV: session key prefix, before version, ttl.
# The session keys are built here from the set's members; they share the set's hash tag.
_REVOKE_ALL = """
local sids = redis.call('SMEMBERS', KEYS[1])
for _, sid in ipairs(sids) do redis.call('DEL', ARGV[1] .. sid) end
redis.call('DEL', KEYS[1])
local floor = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[2]) > floor then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
return #sids
"""

# KEYS: counter. ARGV: window. Returns {attempts, ms left in the window}.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1]) * 1000
end
return {n, ttl}
"""

# KEYS: slowdown hash. ARGV: now ms, free attempts, base ms, cap ms, ttl s. Returns 0 when the
# attempt is counted, else the ms it must still wait (and counts nothing). Slowdown.delay's rule.
_SLOW = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local now = tonumber(ARGV[1])
local free = tonumber(ARGV[2])
if n >= free then
  local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
  local wait = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(n - free, 64))
  if now < last + wait then return math.ceil(last + wait - now) end
end
redis.call('HSET', KEYS[1], 'n', n + 1, 'last', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 0
"""

# KEYS: counter. Takes back one attempt; never below zero, never creates the counter.
_REFUND = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""

# KEYS: slowdown hash. Takes back one attempt; never below zero, never creates the hash.
_REFUND_SLOWDOWN = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n > 0 then return redis.call('HINCRBY', KEYS[1], 'n', -1) end
return 0
"""

_ROTATIONS = {1: Rotation.ROTATED, -1: Rotation.REUSED, 0: Rotation.UNKNOWN}


class RedisSessionStore:
    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._open = client.register_script(_OPEN)
        self._rotate = client.register_script(_ROTATE)
        self._revoke_all = client.register_script(_REVOKE_ALL)

    def _user(self, user_id: UUID) -> str:
        return f"{self._prefix}auth:{{{user_id}}}:"

    def _session(self, user_id: UUID, session_id: str) -> str:
        return f"{self._user(user_id)}session:{session_id}"

    async def open(self, session: Session, idle: int) -> bool:
        user = self._user(session.user_id)
        opened = await self._open(
            keys=[
                self._session(session.user_id, session.session_id),
                user + "sessions",
                user + "floor",
            ],
            args=[
                session.refresh_id,
                min(idle, session.ends_at - session.created_at),
                session.user_version,
                session.session_id,
                session.created_at,
                session.ends_at,
                session.client,
                session.user_agent,
            ],
        )
        return bool(int(opened))

    async def rotate(
        self, user_id: UUID, session_id: str, spent: str, replacement: str, *, now: int, idle: int
    ) -> tuple[Rotation, int]:
        outcome, ends = await self._rotate(
            keys=[self._session(user_id, session_id), self._user(user_id) + "sessions"],
            args=[spent, replacement, now, session_id, idle],
        )
        return _ROTATIONS[int(outcome)], int(ends)

    async def is_active(self, user_id: UUID, session_id: str) -> bool:
        return bool(await self._client.exists(self._session(user_id, session_id)))

    async def revoke(self, user_id: UUID, session_id: str) -> bool:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._session(user_id, session_id))
            pipe.srem(self._user(user_id) + "sessions", session_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def sessions(self, user_id: UUID) -> Sequence[SessionRecord]:
        members = await self._client.smembers(self._user(user_id) + "sessions")
        sids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        async with self._client.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(self._session(user_id, sid))
            fields = await pipe.execute()
        records, gone = [], []
        for sid, session in zip(sids, fields, strict=True):
            if not session:  # expired: the set keeps members until it expires itself
                gone.append(sid)
                continue
            created = int(session.get(b"created", b"0"))
            records.append(
                SessionRecord(
                    sid,
                    created,
                    int(session.get(b"used", created)),
                    session.get(b"client", b"").decode(),
                    session.get(b"agent", b"").decode(errors="replace"),
                )
            )
        if gone:
            await self._client.srem(self._user(user_id) + "sessions", *gone)
        return records

    async def revoke_all(self, user_id: UUID, *, before_version: int, ttl: int) -> None:
        user = self._user(user_id)
        await self._revoke_all(
            keys=[user + "sessions", user + "floor"],
            args=[user + "session:", before_version, ttl],
        )


class RedisRateLimiter:
    """Fixed windows: a counter per key that expires ``window`` seconds after its first hit."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix + "ratelimit:"
        self._hit = client.register_script(_HIT)
        self._refund = client.register_script(_REFUND)
        self._refund_slowdown = client.register_script(_REFUND_SLOWDOWN)
        self._slow = client.register_script(_SLOW)

    async def check(self, limits: Sequence[Limit]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for limit in limits:
                pipe.get(self._prefix + limit.key)
                pipe.pttl(self._prefix + limit.key)
            replies = await pipe.execute()
        waits = [
            _seconds(int(ttl))
            for limit, count, ttl in zip(limits, replies[::2], replies[1::2], strict=True)
            if count is not None and int(count) >= limit.limit
        ]
        if waits:
            raise RateLimited(max(waits))

    async def hit(self, limits: Sequence[Limit]) -> None:
        waits = []
        # One script per key rather than one over all keys: the keys live on different slots.
        for limit in limits:
            count, ttl = await self._hit(keys=[self._prefix + limit.key], args=[limit.window])
            if int(count) > limit.limit:
                waits.append(_seconds(int(ttl)))
        if waits:
            raise RateLimited(max(waits))

    async def slow(self, slowdown: Slowdown) -> None:
        # The application's clock, not the script's: servers keep time with NTP, and a script
        # that reads TIME before writing is refused by older Redis (6.2, embedded).
        wait = await self._slow(
            keys=[self._prefix + slowdown.key],
            args=[
                int(time.time() * 1000),
                slowdown.free,
                int(slowdown.base * 1000),
                slowdown.cap * 1000,
                slowdown.ttl,
            ],
        )
        if int(wait) > 0:
            raise RateLimited(_seconds(int(wait)))

    async def clear(self, limit: Limit | Slowdown) -> None:
        await self._client.delete(self._prefix + limit.key)

    async def refund(self, limit: Limit | Slowdown) -> None:
        if isinstance(limit, Slowdown):
            await self._refund_slowdown(keys=[self._prefix + limit.key])
        else:
            await self._refund(keys=[self._prefix + limit.key])


def _seconds(milliseconds: int) -> int:
    # A key with no expiry (-1) or just expired (-2) still means "try again shortly".
    return max(1, math.ceil(milliseconds / 1000))
