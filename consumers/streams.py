"""The mailer's streams: a group that sees every entry ever published, and bounded history.

FastStream creates a consumer group at the stream's end (``$``) the first time a subscriber
starts, so whatever the relay published before any mailer ever ran would be skipped. The
keeper creates the group first, at the stream's start (``0``). Entries every group has read
and acknowledged are trimmed away, so a stream holds only what is still in play.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger("taskledger.mailer")


@dataclass(frozen=True, slots=True)
class RedisStreamKeeper:
    redis: Redis
    group: str
    streams: Sequence[str]
    # Every mailer process joins under a name of its own; one idle this long with nothing
    # pending is gone (restarted, scaled down) and is dropped from the group.
    forget_after_ms: int = 3_600_000

    async def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def trim(self) -> None:
        """Drop the entries every group has settled, and the mailers long gone."""
        for stream in self.streams:
            cut = await self._settled_before(stream)
            if cut is not None:
                await self.redis.xtrim(stream, minid=cut, approximate=False)
            await self._forget_departed(stream)

    async def _forget_departed(self, stream: str) -> None:
        consumers: list[dict[str, Any]] = await self.redis.xinfo_consumers(stream, self.group)
        for consumer in consumers:
            if not consumer["pending"] and consumer["idle"] >= self.forget_after_ms:
                await self.redis.xgroup_delconsumer(stream, self.group, consumer["name"])

    async def _settled_before(self, stream: str) -> str | None:
        groups: list[dict[str, Any]] = await self.redis.xinfo_groups(stream)
        bounds: list[tuple[int, int]] = []
        for group in groups:
            millis, seq = _entry_id(group["last-delivered-id"])
            bound = (millis, seq + 1)  # everything up to the last delivered entry, inclusive
            if group["pending"]:
                pending = await self.redis.xpending(stream, group["name"])
                bound = min(bound, _entry_id(pending["min"]))
            bounds.append(bound)
        if not bounds or min(bounds) <= (0, 1):
            return None
        low = min(bounds)
        return f"{low[0]}-{low[1]}"

    async def keep(self, every: float) -> None:
        """Trim every ``every`` seconds until cancelled; a failed pass is tried again later."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.trim()
            except RedisError as exc:
                log.warning("trimming the mail streams failed: %s", exc)


def _entry_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)
