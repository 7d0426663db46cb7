"""The runner: keeps one generation of one projection current with its upstream logs.

Per upstream, a reader task fetches and decodes batches (in a thread: eventsourcing is
synchronous) while the projector applies the previous one; after each applied batch the
checkpoint advances. The checkpoint moves only past events that were applied or parked, so
a crash at any point re-applies a batch (harmless: projectors ignore stale writes) and never
skips one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pymongo.errors
import redis.exceptions

from projections import metrics
from projections.checkpoints import (
    CheckpointStore,
    LogMark,
    StaleCheckpointError,
    checkpoints_of,
)
from projections.envelope import Envelope, Projection, Projector
from projections.event_context import bind_event_context, event_spans
from projections.log import LogSignal, NotificationLog, Undecodable, checkpoint_problem
from projections.parked import ParkedEvent, ParkedEvents

log = logging.getLogger(__name__)

# Lag in seconds needs a read of the log; once a second per upstream is plenty for a gauge.
LAG_SECONDS_EVERY = 1.0


# Replies of a Redis that is there but cannot take writes now (failover, loading, memory).
_REDIS_BUSY = re.compile(r"^(?:.*?-)?(OOM|BUSY|MASTERDOWN|CLUSTERDOWN|LOADING|TRYAGAIN|READONLY)\b")

# MongoDB codes of a primary going away or a node that cannot take writes now.
_MONGO_NOT_NOW = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        189,  # PrimarySteppedDown
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11602,  # InterruptedDueToReplStateChange
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
        50,  # MaxTimeMSExpired
    }
)

# OS errors of an unreachable peer; others (a missing file, a permission) would retry forever.
_UNREACHABLE = frozenset(
    {
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ETIMEDOUT,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EPIPE,
    }
)


def _mongo_transient(exc: pymongo.errors.PyMongoError) -> bool:
    if isinstance(
        exc,
        pymongo.errors.ConnectionFailure  # AutoReconnect, NotPrimaryError, timeouts
        | pymongo.errors.ExecutionTimeout
        | pymongo.errors.WTimeoutError
        | pymongo.errors.WriteConcernError,
    ):
        return True
    if exc.has_error_label("RetryableWriteError"):
        return True
    if isinstance(exc, pymongo.errors.BulkWriteError):
        details = exc.details or {}
        if details.get("writeConcernErrors"):
            return True
        return any(error.get("code") in _MONGO_NOT_NOW for error in details.get("writeErrors", ()))
    return isinstance(exc, pymongo.errors.OperationFailure) and exc.code in _MONGO_NOT_NOW


def is_transient(exc: BaseException) -> bool:
    """A server that does not answer, or cannot take writes now: retry later, never park."""
    if isinstance(exc, pymongo.errors.PyMongoError):
        return _mongo_transient(exc)
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True  # BusyLoadingError included
    if isinstance(exc, redis.exceptions.ResponseError):  # ReadOnlyError, OOM, failover replies
        return isinstance(exc, redis.exceptions.ReadOnlyError) or bool(
            _REDIS_BUSY.match(str(exc).lstrip())
        )
    if isinstance(exc, RepeatedFailureError | TimeoutError | ConnectionError | socket.gaierror):
        return True
    return isinstance(exc, OSError) and exc.errno in _UNREACHABLE


class RepeatedFailureError(Exception):
    """Event after event fails the same way: the cause is the system, not the events."""


def first_error(error: BaseException) -> BaseException:
    """The first real error inside (nested) task-group exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class LogUnavailableError(Exception):
    """Reading the upstream log failed; nothing was applied, the reader retries."""


class CheckpointMismatchError(Exception):
    """The checkpoint claims a place its log does not hold (ahead of it, another log, or a
    diverged one): resuming would skip events for ever, so the projection stops until it is
    rebuilt."""


@dataclass(frozen=True, slots=True)
class Pacing:
    batch_size: int = 1000
    poll_min: float = 0.01  # back-off of an idle tail, between a wake-up and the ceiling
    poll_max: float = 0.5
    retry_min: float = 0.2  # back-off after a transient error
    retry_max: float = 10.0
    # More consecutive events parked with the same error type than this, in one one-by-one
    # pass, means a systemic failure: back off and retry instead of parking the whole log.
    park_breaker: int = 5


@dataclass(frozen=True, slots=True)
class Progress:
    projection: str
    generation: int
    upstream: str
    position: int
    head: int


@dataclass(frozen=True, slots=True)
class _Chunk:
    items: Sequence[Envelope | Undecodable]
    upto: int  # the checkpoint once the items are applied
    head: int
    at: str | None  # the event at ``upto``, for the checkpoint's mark


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


@dataclass
class _Track:
    position: int = 0
    head: int = 0
    lag_checked: float = field(default=float("-inf"))
    log: str | None = None  # the log's identity, read once per claim


async def _sleep(token: asyncio.Event, stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait for a wake-up, a stop or ``seconds``; True unless the time ran out."""
    if stop is None:
        return await LogSignal.wait(token, seconds)
    waits = [asyncio.ensure_future(token.wait()), asyncio.ensure_future(stop.wait())]
    done, pending = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return bool(done)


def _stopped(stop: asyncio.Event | None) -> bool:
    return stop is not None and stop.is_set()


class ProjectionRunner:
    """Applies every upstream event of a projection to one generation, in order, at least once."""

    def __init__(
        self,
        projection: Projection,
        generation: int,
        logs: Mapping[str, NotificationLog],
        checkpoints: CheckpointStore,
        parked: ParkedEvents,
        *,
        pacing: Pacing | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        live: bool = False,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        missing = [u for u in projection.upstreams if u not in logs]
        if missing:
            raise ValueError(f"{projection.name}: no log for upstream(s) {', '.join(missing)}")
        self.projection = projection
        self.generation = generation
        self.projector: Projector = projection.projector(generation)
        self.logs = [logs[u] for u in projection.upstreams]
        self.checkpoints = checkpoints_of(projection, checkpoints)
        self.parked = parked
        self.pacing = pacing or Pacing()
        self.on_progress = on_progress
        # Only the live generation reports gauges; the host flips this when aliases change.
        self.live = live
        self._transient = transient
        self._apply_lock = asyncio.Lock()
        self._started = False
        self._tracks = {upstream.name: _Track() for upstream in self.logs}

    @property
    def name(self) -> str:
        return self.projection.name

    async def start(self) -> None:
        if not self._started:
            await self.projector.start()
            self._started = True
            if self.live:
                await self.report_parked()

    async def report_parked(self) -> None:
        """Set the parked-events gauge from the store (on start, and when becoming live)."""
        count = await self.parked.count(self.name, self.generation)
        metrics.PARKED.labels(self.name).set(count)

    async def catch_up(self) -> None:
        """Apply everything up to the head of every upstream (heads re-read until reached)."""
        await self.start()
        await self._each_upstream(None, until_head=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Tail every upstream until ``stop`` is set; returns after the batch in hand is applied."""
        await self.start()
        await self._each_upstream(stop, until_head=False)

    async def _each_upstream(self, stop: asyncio.Event | None, *, until_head: bool) -> None:
        """Follow every upstream at once; the first failure stops all and is raised as is."""
        try:
            async with asyncio.TaskGroup() as group:
                for upstream in self.logs:
                    group.create_task(self._follow(upstream, stop, until_head=until_head))
        except BaseExceptionGroup as group:
            raise first_error(group) from None

    async def _follow(
        self, upstream: NotificationLog, stop: asyncio.Event | None, *, until_head: bool
    ) -> None:
        delay = self.pacing.retry_min
        track = self._tracks[upstream.name]
        while not _stopped(stop):
            before = track.position
            try:
                await self._follow_once(upstream, stop, until_head=until_head)
                return
            except Exception as exc:
                if not (isinstance(exc, LogUnavailableError) or self._transient(exc)):
                    raise
                if track.position > before:
                    delay = self.pacing.retry_min  # it made progress since the last failure
                log.warning(
                    "%s v%d <- %s: %s; retrying from the checkpoint in %.1fs",
                    self.name,
                    self.generation,
                    upstream.name,
                    exc,
                    delay,
                )
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self.pacing.retry_max)

    async def _follow_once(
        self, upstream: NotificationLog, stop: asyncio.Event | None, *, until_head: bool
    ) -> None:
        claimed = await self.checkpoints.claim(self.name, self.generation, upstream.name)
        position = claimed.position
        track = self._tracks[upstream.name]
        track.position = position
        track.log = None
        # On every start and reconnect: the log must still hold what the checkpoint applied.
        try:
            problem = await asyncio.to_thread(checkpoint_problem, upstream, claimed)
        except Exception as exc:
            raise LogUnavailableError(f"{upstream.name}: {exc}") from exc
        self._report_mismatch(upstream.name, problem is not None)
        if problem is not None:
            raise CheckpointMismatchError(
                f"{self.name} v{self.generation} <- {upstream.name}: {problem}; stopped, "
                f"`taskledger projections rebuild {self.name}` rebuilds it from this log"
            )
        chunks: asyncio.Queue[_Chunk | _Failed | None] = asyncio.Queue(maxsize=2)
        reader = asyncio.create_task(
            self._read(upstream, position, chunks, stop, until_head=until_head)
        )
        try:
            while True:
                chunk = await chunks.get()
                if chunk is None:
                    return
                if isinstance(chunk, _Failed):
                    raise chunk.error
                await self._apply(upstream.name, chunk.items)
                if track.log is None and chunk.at is not None:
                    try:
                        track.log = await asyncio.to_thread(upstream.identity)
                    except Exception as exc:
                        raise LogUnavailableError(f"{upstream.name}: {exc}") from exc
                mark = (
                    None if track.log is None or chunk.at is None else LogMark(track.log, chunk.at)
                )
                if not await self.checkpoints.advance(
                    self.name, self.generation, upstream.name, chunk.upto, claimed.epoch, mark=mark
                ):
                    raise StaleCheckpointError(
                        f"{self.name} v{self.generation} <- {upstream.name}: reset since this "
                        f"runner started (epoch {claimed.epoch}); its writes are not counted"
                    )
                track.position = chunk.upto
                track.head = max(track.head, chunk.head)
                await self._report(upstream)
                if _stopped(stop):
                    return
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(
        self,
        upstream: NotificationLog,
        position: int,
        chunks: asyncio.Queue[_Chunk | _Failed | None],
        stop: asyncio.Event | None,
        *,
        until_head: bool,
    ) -> None:
        topics = list(self.projection.topics)
        size = self.pacing.batch_size
        delay = self.pacing.poll_min
        track = self._tracks[upstream.name]
        try:
            while not _stopped(stop):
                # The token is taken before the head is read: a commit after this point wakes us.
                token = upstream.signal.token()
                try:
                    head = await asyncio.to_thread(upstream.head)
                except Exception as exc:
                    raise LogUnavailableError(f"{upstream.name}: {exc}") from exc
                if head < position:  # the log shrank under us: replaced or restored
                    raise CheckpointMismatchError(
                        f"{self.name} v{self.generation} <- {upstream.name}: the log's head "
                        f"{head} fell behind position {position}; stopped, "
                        f"`taskledger projections rebuild {self.name}` rebuilds it from this log"
                    )
                track.head = max(track.head, head)
                if head <= position:
                    if until_head:
                        break
                    if track.position >= head:
                        await self._report(upstream)
                    woke = await _sleep(token, stop, delay)
                    delay = self.pacing.poll_min if woke else min(delay * 2, self.pacing.poll_max)
                    continue
                delay = self.pacing.poll_min
                while position < head and not _stopped(stop):
                    try:
                        batch = await asyncio.to_thread(upstream.read, position, size, topics, head)
                    except Exception as exc:
                        raise LogUnavailableError(f"{upstream.name}: {exc}") from exc
                    # A short read up to the head covers every position up to it, even those
                    # of topics this projection does not handle: the checkpoint moves past them.
                    await chunks.put(_Chunk(batch.items, batch.last, head, batch.at))
                    position = batch.last
            await chunks.put(None)
        except Exception as exc:  # handed to the applying side, which owns the retry policy
            await chunks.put(_Failed(exc))

    async def _apply(self, upstream: str, items: Sequence[Envelope | Undecodable]) -> None:
        envelopes = [item for item in items if isinstance(item, Envelope)]
        for item in items:
            if isinstance(item, Undecodable):
                await self._park(upstream, item.position, item.topic, item.error)
        if not envelopes:
            return
        async with self._apply_lock:
            try:
                with event_spans((e.meta, f"{self.name}: {e.topic}") for e in envelopes):
                    await self.projector.apply(envelopes)
            except Exception as exc:
                if self._transient(exc):
                    raise
                log.warning(
                    "%s v%d: batch failed (%s); applying one by one",
                    self.name,
                    self.generation,
                    exc,
                )
            else:
                metrics.APPLIED.labels(self.name).inc(len(envelopes))
                return
            # Failures of one type in a row are parked only once the streak ends short of the
            # breaker: a longer one is the system failing, and parks nothing.
            streak: list[tuple[Envelope, BaseException]] = []
            for envelope in envelopes:
                # One event at a time: its lines (a parked event's above all) join its request.
                with bind_event_context(envelope.meta, f"{self.name}: {envelope.topic}"):
                    try:
                        await self.projector.apply([envelope])
                    except Exception as exc:
                        if self._transient(exc):
                            raise
                        if streak and type(streak[0][1]) is not type(exc):
                            await self._park_all(upstream, streak)
                        streak.append((envelope, exc))
                        if len(streak) > self.pacing.park_breaker:
                            raise RepeatedFailureError(
                                f"{len(streak)} events in a row failed with "
                                f"{type(exc).__name__}: {exc}"
                            ) from exc
                        continue
                await self._park_all(upstream, streak)
                metrics.APPLIED.labels(self.name).inc()
            await self._park_all(upstream, streak)

    async def _park_all(self, upstream: str, failed: list[tuple[Envelope, BaseException]]) -> None:
        for envelope, exc in failed:
            with bind_event_context(envelope.meta, f"{self.name}: {envelope.topic}"):
                error = f"{type(exc).__name__}: {exc}"
                await self._park(upstream, envelope.position, envelope.topic, error)
        failed.clear()

    async def _park(self, upstream: str, position: int, topic: str, error: str) -> None:
        log.error(
            "%s v%d: parked %s #%d (%s): %s",
            self.name,
            self.generation,
            upstream,
            position,
            topic,
            error,
        )
        await self.parked.park(
            ParkedEvent(
                projection=self.name,
                generation=self.generation,
                upstream=upstream,
                position=position,
                topic=topic,
                error=error[:4000],
                time=datetime.now(UTC),
            )
        )
        if self.live:
            await self.report_parked()

    async def _report(self, upstream: NotificationLog) -> None:
        track = self._tracks[upstream.name]
        if self.on_progress is not None:
            self.on_progress(
                Progress(self.name, self.generation, upstream.name, track.position, track.head)
            )
        if not self.live:
            return
        labels = (self.name, upstream.name)
        metrics.POSITION.labels(*labels).set(track.position)
        metrics.HEAD.labels(*labels).set(track.head)
        metrics.LAG_EVENTS.labels(*labels).set(max(0, track.head - track.position))
        if track.position >= track.head:
            metrics.LAG_SECONDS.labels(*labels).set(0)
            return
        now = time.monotonic()
        if now - track.lag_checked < LAG_SECONDS_EVERY:
            return
        track.lag_checked = now
        try:
            oldest = await asyncio.to_thread(upstream.first_after, track.position)
        except Exception as exc:  # a gauge is not worth failing a batch for
            log.debug("lag of %s <- %s unknown: %s", self.name, upstream.name, exc)
            return
        lag = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
        metrics.LAG_SECONDS.labels(*labels).set(max(0.0, lag))

    def _report_mismatch(self, upstream: str, mismatched: bool) -> None:
        if self.live:
            metrics.CHECKPOINT_MISMATCH.labels(self.name, upstream).set(int(mismatched))

    def forget_metrics(self) -> None:
        metrics.forget(self.name, [u.name for u in self.logs])
