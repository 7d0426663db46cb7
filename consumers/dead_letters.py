"""The dead-letter stream, for operators: list what was parked, re-drive it, or purge it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from consumers.ledger import DATA_FIELD, MailerKeys

RawEntry = tuple[bytes, dict[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    entry_id: str  # in the dead-letter stream
    stream: str  # where the message came from, and goes back to on retry
    kind: str
    message_id: str
    reason: str
    attempts: int
    failed_at: str


@dataclass(frozen=True, slots=True)
class RedisDeadLetters:
    redis: Redis
    keys: MailerKeys

    async def entries(self, limit: int = 100) -> list[DeadLetter]:
        """Oldest first."""
        found = _raw(await self.redis.xrange(self.keys.dead_letters, count=limit))
        return [_letter(entry_id, fields) for entry_id, fields in found]

    async def retry(self, entry_ids: Sequence[str] = ()) -> int:
        """Put the messages back on their streams as new, forgetting their failures."""
        done = 0
        for entry_id, fields in await self._select(entry_ids):
            letter = _letter(entry_id, fields)
            async with self.redis.pipeline(transaction=True) as pipe:
                if letter.message_id:
                    pipe.delete(
                        self.keys.state(letter.message_id), self.keys.attempts(letter.message_id)
                    )
                pipe.xadd(letter.stream, {DATA_FIELD: fields[b"data"]})
                pipe.xdel(self.keys.dead_letters, entry_id)
                await pipe.execute()
            done += 1
        return done

    async def purge(self, entry_ids: Sequence[str] = ()) -> int:
        """Drop parked messages for good (all of them when no id is given)."""
        if not entry_ids:
            count = int(await self.redis.xlen(self.keys.dead_letters))
            await self.redis.delete(self.keys.dead_letters)
            return count
        return int(await self.redis.xdel(self.keys.dead_letters, *entry_ids))

    async def _select(self, entry_ids: Sequence[str]) -> list[RawEntry]:
        if not entry_ids:
            return _raw(await self.redis.xrange(self.keys.dead_letters))
        found: list[RawEntry] = []
        for entry_id in entry_ids:
            found += _raw(await self.redis.xrange(self.keys.dead_letters, entry_id, entry_id))
        return found


def _raw(reply: Any) -> list[RawEntry]:
    return cast(list[RawEntry], reply)


def _letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode(errors="replace")

    return DeadLetter(
        entry_id=entry_id.decode(),
        stream=text("stream"),
        kind=text("kind"),
        message_id=text("message_id"),
        reason=text("reason"),
        attempts=int(text("attempts") or 0),
        failed_at=text("failed_at"),
    )
