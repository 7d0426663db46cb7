"""Reading an upstream application's notification log, and being woken when it grows.

Reads are synchronous (eventsourcing is); the runner calls them through ``asyncio.to_thread``.
Wake-ups are asynchronous: ``LogSignal`` is fired by a PostgreSQL LISTEN on the channel the
eventsourcing recorder already NOTIFYs on every insert, or by a watch on the SQLite files.
Without either, the runner still finds new events by polling with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg import sql

from domain.meta import Meta
from projections.checkpoints import Checkpoint
from projections.envelope import Envelope

log = logging.getLogger(__name__)


def _timestamp(event: object) -> datetime:
    # Every aggregate event has one; the mapper's protocol type just does not say so.
    timestamp: datetime = getattr(event, "timestamp")  # noqa: B009
    return timestamp


class LogSignal:
    """Wakes every runner following one log. Take a ``token`` before reading, wait on it after.

    A token is the event current when it was taken; firing sets it and installs a fresh one,
    so a wake-up between a runner's read and its wait is never lost.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def token(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    @staticmethod
    async def wait(token: asyncio.Event, seconds: float) -> bool:
        """True when woken, False after ``seconds``."""
        try:
            await asyncio.wait_for(token.wait(), seconds)
        except TimeoutError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A notification the mapper could not turn into an event: the runner parks it."""

    position: int
    topic: str
    error: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What one read found: every wanted event with ``after < position <= last``."""

    items: list[Envelope | Undecodable]
    last: int  # the requested ``upto``, unless the limit was reached first
    at: str | None = None  # the event at ``last`` (``originator_id:version``), of any topic


class NotificationLog(Protocol):
    """One upstream application's log, in notification-id order."""

    name: str
    signal: LogSignal

    def head(self) -> int:
        """The highest notification id (0 for an empty log). Everything up to it is committed."""
        ...

    def read(self, after: int, limit: int, topics: Sequence[str], upto: int) -> Batch:
        """Events of ``topics`` (all if empty) after ``after`` up to ``upto``, at most ``limit``."""
        ...

    def first_after(self, after: int) -> datetime | None:
        """When the first event after ``after`` happened (of any topic); None if there is none."""
        ...

    def event_at(self, position: int) -> str | None:
        """The event at ``position`` as ``originator_id:version``; None if there is none.

        The event at the lowest position is the log's identity (see ``LogMark``)."""
        ...

    def identity(self) -> str | None:
        """The log's first event, ``event_at`` its lowest position; None while it is empty."""
        ...


def checkpoint_problem(upstream: NotificationLog, checkpoint: Checkpoint) -> str | None:
    """Why ``checkpoint`` cannot resume on ``upstream`` (ahead of it, taken on another log,
    or the log diverged since), or None. Synchronous, like the log's reads."""
    if checkpoint.position <= 0:
        return None
    head = upstream.head()
    if checkpoint.position > head:
        return (
            f"checkpoint {checkpoint.position} is ahead of the {upstream.name} log's head "
            f"{head}: it was taken on another log (or one restored from an older backup)"
        )
    mark = checkpoint.mark
    if mark is None:
        return None  # stored before marks existed: accepted, marked on its next advance
    identity = upstream.identity()
    if identity != mark.log:
        return (
            f"checkpoint {checkpoint.position} was taken on another {upstream.name} log "
            f"(first event {mark.log}; this log's is {identity})"
        )
    found = upstream.event_at(checkpoint.position)
    if found != mark.event:
        return (
            f"the {upstream.name} log diverged from checkpoint {checkpoint.position}: "
            f"it applied {mark.event} there, the log now holds {found or 'nothing'} "
            "(restored from an older backup?)"
        )
    return None


def mark_of(notification: Notification) -> str:
    return f"{notification.originator_id}:{notification.originator_version}"


class UpstreamReader(Application[UUID]):
    """A read-only handle on an application's store (the projector's logs, the audit side's
    histories): same name, so same tables and same mapper."""

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        # Application.__init__ reads self.name to find the tables and the env prefix.
        self.name = name
        super().__init__(env=dict(env))


class EventsourcingLog:
    """A NotificationLog over an eventsourcing application's recorder and mapper.

    Every event in the application's table is its own: each application has its own SQLite
    file (ops.bootstrap.event_store_env) or its own PostgreSQL tables.
    """

    def __init__(self, app: Application[Any], name: str | None = None) -> None:
        self.name = name or app.name
        self.app = app
        self.signal = LogSignal()

    @classmethod
    def open(cls, name: str, env: Mapping[str, str]) -> EventsourcingLog:
        return cls(UpstreamReader(name, env), name)

    def close(self) -> None:
        self.app.close()

    def head(self) -> int:
        return self.app.recorder.max_notification_id() or 0

    def read(self, after: int, limit: int, topics: Sequence[str], upto: int) -> Batch:
        notifications = self.app.recorder.select_notifications(
            after, limit, stop=upto, topics=topics, inclusive_of_start=False
        )
        last = notifications[-1].id if len(notifications) >= limit else upto
        if notifications and notifications[-1].id == last:
            at: str | None = mark_of(notifications[-1])
        else:  # the last position holds an event of another topic
            at = self.event_at(last)
        return Batch([self._decode(n) for n in notifications], last, at)

    def _decode(self, notification: Notification) -> Envelope | Undecodable:
        try:
            return self.envelope(notification)
        except Exception as exc:  # a topic the code no longer knows, a corrupt state
            return Undecodable(notification.id, notification.topic, f"{type(exc).__name__}: {exc}")

    def first_after(self, after: int) -> datetime | None:
        found = self.app.recorder.select_notifications(after, 1, inclusive_of_start=False)
        if not found:
            return None
        return _timestamp(self.app.mapper.to_domain_event(found[0]))

    def event_at(self, position: int) -> str | None:
        found = self.app.recorder.select_notifications(position, 1, stop=position)
        return mark_of(found[0]) if found else None

    def identity(self) -> str | None:
        found = self.app.recorder.select_notifications(None, 1)
        return mark_of(found[0]) if found else None

    def envelope(self, notification: Notification) -> Envelope:
        event = self.app.mapper.to_domain_event(notification)
        meta: Meta | None = getattr(event, "meta", None)
        originator_id = notification.originator_id
        return Envelope(
            application=self.name,
            position=notification.id,
            topic=notification.topic,
            originator_id=originator_id if isinstance(originator_id, UUID) else UUID(originator_id),
            originator_version=notification.originator_version,
            timestamp=_timestamp(event),
            event=event,
            meta=meta,
        )

    def postgres_channel(self) -> tuple[dict[str, Any], str] | None:
        """Connection parameters and the channel the recorder NOTIFYs, when on PostgreSQL."""
        recorder = self.app.recorder
        if not isinstance(recorder, PostgresApplicationRecorder):
            return None
        kwargs = recorder.datastore.pool.kwargs
        if callable(kwargs):
            kwargs = kwargs()
        params = {k: v for k, v in (kwargs or {}).items() if k != "row_factory"}
        return params, recorder.channel_name

    def sqlite_path(self) -> Path | None:
        """The database file, when on a file-backed SQLite store."""
        recorder = self.app.recorder
        if not isinstance(recorder, SQLiteApplicationRecorder):
            return None
        pool = recorder.datastore.pool
        if pool.is_sqlite_memory_mode:
            return None
        return Path(pool.db_name.removeprefix("file:").split("?", 1)[0])


class PostgresListener:
    """LISTEN on the eventsourcing recorder's channel and fire a signal on every NOTIFY.

    The recorder sends ``NOTIFY <app>_events`` in every inserting transaction, so a commit
    wakes the runners at once. One connection per log per process; it reconnects after errors
    and fires once on (re)connect, since NOTIFYs sent while it was away are lost.
    """

    def __init__(self, params: Mapping[str, Any], channel: str, signal: LogSignal) -> None:
        self._params = dict(params)
        self._channel = channel
        self._signal = signal

    async def run(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._params)
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    delay = 0.1
                    self._signal.fire()
                    async for _ in conn.notifies():
                        self._signal.fire()
            except psycopg.Error as exc:
                log.warning("LISTEN %s failed (%s); retrying in %.1fs", self._channel, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class SqliteFileWatch:
    """Fire signals when the SQLite database (or its write-ahead log) changes on disk.

    SQLite has no notifications; a stat every few milliseconds is far cheaper than a query
    and gives the same low lag as LISTEN. The runner's own polling still backs this up.
    """

    def __init__(self, path: Path, signals: Sequence[LogSignal], interval: float = 0.005) -> None:
        self._paths = [path, path.with_name(path.name + "-wal")]
        self._signals = list(signals)
        self._interval = interval

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    async def run(self) -> None:
        last = self._stamp()
        while True:
            await asyncio.sleep(self._interval)
            stamp = self._stamp()
            if stamp != last:
                last = stamp
                for signal in self._signals:
                    signal.fire()


async def watch(logs: Sequence[EventsourcingLog]) -> None:
    """Run the best wake-up source for each log until cancelled."""
    tasks: list[asyncio.Task[None]] = []
    by_path: dict[Path, list[LogSignal]] = {}
    for upstream in logs:
        channel = upstream.postgres_channel()
        if channel is not None:
            listener = PostgresListener(channel[0], channel[1], upstream.signal)
            tasks.append(asyncio.create_task(listener.run(), name=f"listen-{upstream.name}"))
            continue
        path = upstream.sqlite_path()
        if path is not None:
            by_path.setdefault(path, []).append(upstream.signal)
    for path, signals in by_path.items():
        tasks.append(asyncio.create_task(SqliteFileWatch(path, signals).run(), name="sqlite-watch"))
    try:
        if tasks:
            await asyncio.gather(*tasks)
        else:
            await asyncio.Event().wait()  # nothing to watch: polling alone finds new events
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
