"""Who to write to: the relay's own small read model of users' email and display name.

Reset events carry only the request id and expiry; the address comes from the user's earlier
``Registered`` event (same log, lower position), kept here so the relay never asks the write
side. Every write carries the event's aggregate version and is ignored when stale, so
re-applying any batch changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from projections.envelope import drop_namespace


@dataclass(frozen=True, slots=True)
class Contact:
    email: str
    display_name: str


@dataclass(frozen=True, slots=True)
class ContactChange:
    user_id: UUID
    version: int
    email: str | None = None  # None: unchanged
    display_name: str | None = None


class Contacts(Protocol):
    """The relay's address book for one generation."""

    async def lookup(self, user_ids: Sequence[UUID]) -> Mapping[UUID, Contact]:
        """The known contacts among ``user_ids``; unknown ids are absent."""
        ...

    async def record(self, pipe: Pipeline, changes: Sequence[ContactChange]) -> None:
        """Queue the changes on ``pipe``, so they commit with the batch's messages."""
        ...

    async def drop(self) -> None:
        """Forget the whole generation."""
        ...


# Compare-then-write in one step: a stale (lower or equal) version never overwrites.
_RECORD = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class RedisContacts:
    redis: Redis
    namespace: str  # e.g. "tl:rm:mail_relay:v1:"
    _record: AsyncScript = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # EVALSHA from then on; the pipeline loads the script first if the server lacks it.
        object.__setattr__(self, "_record", self.redis.register_script(_RECORD))

    def _key(self, user_id: UUID) -> str:
        return f"{self.namespace}contact:{user_id}"

    async def lookup(self, user_ids: Sequence[UUID]) -> Mapping[UUID, Contact]:
        if not user_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.hmget(self._key(user_id), "email", "display_name")
        rows = await pipe.execute()
        return {
            user_id: Contact(email.decode(), (name or b"").decode())
            for user_id, (email, name) in zip(user_ids, rows, strict=True)
            if email is not None
        }

    async def record(self, pipe: Pipeline, changes: Sequence[ContactChange]) -> None:
        for change in changes:
            fields: list[str] = [str(change.version)]
            if change.email is not None:
                fields += ["email", change.email]
            if change.display_name is not None:
                fields += ["display_name", change.display_name]
            await self._record(keys=[self._key(change.user_id)], args=fields, client=pipe)

    async def drop(self) -> None:
        await drop_namespace(self.redis, self.namespace)
