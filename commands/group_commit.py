"""Group commit: concurrent commands share one event-store transaction.

The PostgreSQL recorder locks the events table for each insert (so notification ids commit in
order), which serialises one-command transactions at one fsync each; a transaction of many
commands costs little more than one of one. So commands hand in their aggregates and wait; one
committer thread saves whatever is queued — what arrived while the previous transaction ran,
never waiting for more — in one transaction, and gives each command the recordings of its own
events. Threads wait blocked (``save``); coroutines await (``save_async``) and need no thread of
their own, so a command that reads nothing never leaves the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol

from eventsourcing.domain import (
    CollectEventsProtocol,
    DomainEventProtocol,
    MutableAggregateProtocol,
    TAggregateID,
    TAggregateID_co,
)
from eventsourcing.persistence import IntegrityError, Recording


class PendingAggregate(
    MutableAggregateProtocol[TAggregateID_co], CollectEventsProtocol, Protocol[TAggregateID_co]
):
    """An aggregate with events not yet stored (an eventsourcing ``Aggregate``)."""


class SavesInOneTransaction(Protocol[TAggregateID]):
    """An eventsourcing ``Application.save``: all it is given is stored atomically, or nothing."""

    def __call__(
        self, *objs: MutableAggregateProtocol[TAggregateID] | DomainEventProtocol[TAggregateID]
    ) -> Sequence[Recording[TAggregateID]]: ...


# How a command's caller is told it is done: a thread waits on an Event, a coroutine awaits a
# future of its own event loop.
_Waiter = threading.Event | tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class _Command(Generic[TAggregateID]):
    """One caller's submission, and what became of it."""

    __slots__ = ("aggregates", "error", "events", "ids", "recordings", "waiter")

    def __init__(
        self,
        aggregates: Sequence[PendingAggregate[TAggregateID]],
        events: list[DomainEventProtocol[TAggregateID]],
        waiter: _Waiter,
    ) -> None:
        self.aggregates = aggregates
        self.events = events
        self.ids = frozenset(event.originator_id for event in events)
        self.waiter = waiter
        self.error: BaseException | None = None
        self.recordings: list[Recording[TAggregateID]] = []

    def outcome(self) -> list[Recording[TAggregateID]]:
        if self.error is not None:
            raise self.error
        return self.recordings


class GroupCommit(Generic[TAggregateID]):
    """Saves the aggregates of concurrent commands together, each command all or nothing.

    A batch never holds two commands on the same aggregate (the later one waits for the next
    batch), so every version conflict is between a command and what is already stored. A batch
    that conflicts is split in halves and each half saved on its own, down to single commands,
    so only the stale commands hear ``IntegrityError``; any other failure of a save is raised
    to every command in it. ``max_batch`` of 1 saves each command alone on its caller's
    thread, as if there were no group commit at all.
    """

    def __init__(
        self,
        save: SavesInOneTransaction[TAggregateID],
        *,
        max_batch: int = 256,
        batched: Callable[[int], None] = lambda commands: None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._save = save
        self._max_batch = max_batch
        # Told the number of commands in each batch taken (a metric).
        self._batched = batched
        self._lock = threading.Lock()
        self._queue: deque[_Command[TAggregateID]] = deque()
        self._saving = False
        # One thread is all it takes (one transaction at a time); started on first use.
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="group-commit")

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def waiting(self) -> int:
        """Commands queued for a later transaction than the one in progress."""
        with self._lock:
            return len(self._queue)

    def save(self, *aggregates: PendingAggregate[TAggregateID]) -> list[Recording[TAggregateID]]:
        """Store the pending events of one command's aggregates; block until stored."""
        if self._max_batch == 1:
            return list(self._save(*aggregates))
        command = self._command(aggregates, threading.Event())
        if command is None:
            return []
        self._submit(command)
        assert isinstance(command.waiter, threading.Event)
        command.waiter.wait()
        return command.outcome()

    async def save_async(
        self, *aggregates: PendingAggregate[TAggregateID]
    ) -> list[Recording[TAggregateID]]:
        """As ``save``, for a coroutine: the event loop goes on while the batch is saved."""
        loop = asyncio.get_running_loop()
        if self._max_batch == 1:
            return await loop.run_in_executor(None, lambda: list(self._save(*aggregates)))
        future: asyncio.Future[None] = loop.create_future()
        command = self._command(aggregates, (loop, future))
        if command is None:
            return []
        self._submit(command)
        # Cancelling the caller cannot take back a command already queued: it is stored anyway.
        await asyncio.shield(future)
        return command.outcome()

    def close(self) -> None:
        """Save what is queued, then stop the committer thread."""
        self._committer.shutdown(wait=True)

    def _command(
        self, aggregates: Sequence[PendingAggregate[TAggregateID]], waiter: _Waiter
    ) -> _Command[TAggregateID] | None:
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        return _Command(aggregates, events, waiter) if events else None

    def _submit(self, command: _Command[TAggregateID]) -> None:
        with self._lock:
            self._queue.append(command)
            if self._saving:
                return  # the committer takes it after the transaction in progress
            self._saving = True
        try:
            self._committer.submit(self._drain)
        except RuntimeError:
            # Closed: refuse this command, and leave nothing queued that nobody would save.
            with self._lock:
                self._queue.remove(command)
                self._saving = False
            raise

    def _drain(self) -> None:
        """On the committer thread: save batches until nothing is queued."""
        while True:
            with self._lock:
                batch = self._take()
                if not batch:
                    self._saving = False
                    return
            self._batched(len(batch))
            self._store(batch)
            _wake(batch)

    def _take(self) -> list[_Command[TAggregateID]]:
        """Up to max_batch queued commands, oldest first, no two touching the same aggregate.

        A command left behind also holds back later commands on its aggregates, so commands
        on one aggregate are saved in the order they arrived.
        """
        batch: list[_Command[TAggregateID]] = []
        left: list[_Command[TAggregateID]] = []
        taken: set[Any] = set()
        held: set[Any] = set()
        while self._queue and len(batch) < self._max_batch:
            command = self._queue.popleft()
            if taken.isdisjoint(command.ids) and held.isdisjoint(command.ids):
                batch.append(command)
                taken |= command.ids
            else:
                left.append(command)
                held |= command.ids
        self._queue.extendleft(reversed(left))
        return batch

    def _store(self, batch: list[_Command[TAggregateID]]) -> None:
        events = [event for command in batch for event in command.events]
        # The aggregates go along (their pending events are already taken), so the application
        # still sees which aggregates were saved (its cache, its snapshots).
        aggregates = [aggregate for command in batch for aggregate in command.aggregates]
        try:
            recordings = self._save(*events, *aggregates)
        except IntegrityError as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            half = len(batch) // 2
            self._store(batch[:half])
            self._store(batch[half:])
            return
        except BaseException as exc:
            # Raised in each caller (as concurrent.futures does); the committer goes on.
            for command in batch:
                command.error = exc
            return
        by_aggregate = {aggregate_id: command for command in batch for aggregate_id in command.ids}
        for recording in recordings:
            by_aggregate[recording.domain_event.originator_id].recordings.append(recording)


def _wake(batch: Sequence[_Command[Any]]) -> None:
    """Tell every caller of a batch; each event loop once, not once per command."""
    futures: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for command in batch:
        if isinstance(command.waiter, threading.Event):
            command.waiter.set()
        else:
            loop, future = command.waiter
            futures.setdefault(loop, []).append(future)
    for loop, waiting in futures.items():
        # A closed loop raises RuntimeError: nobody is left there to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, waiting)


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
