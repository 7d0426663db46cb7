"""Group commit: concurrent commands share one event-store transaction.

The PostgreSQL recorder locks the events table for each insert (so notification ids commit in
order), which serialises one-command transactions at one fsync each; a transaction of many
commands costs little more than one of one. So callers (the threads that run commands) hand in
the aggregates of one command and block; a caller that finds no save in progress leads: it
takes what is queued — whatever arrived while the previous transaction ran, never waiting for
more — saves it in one transaction, and hands each caller the recordings of its own events.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
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


class _Command(Generic[TAggregateID]):
    """One caller's submission, and what became of it."""

    __slots__ = ("aggregates", "alone", "done", "error", "events", "ids", "recordings", "wake")

    def __init__(
        self,
        aggregates: Sequence[PendingAggregate[TAggregateID]],
        events: list[DomainEventProtocol[TAggregateID]],
        wake: threading.Condition,
    ) -> None:
        self.aggregates = aggregates
        self.events = events
        self.ids = frozenset(event.originator_id for event in events)
        self.wake = wake
        self.done = False
        # Set when this command's batch conflicted: the caller saves it on its own.
        self.alone = False
        self.error: BaseException | None = None
        self.recordings: list[Recording[TAggregateID]] = []


class GroupCommit(Generic[TAggregateID]):
    """Saves the aggregates of concurrent commands together, each command all or nothing.

    A batch never holds two commands on the same aggregate (the later one waits for the next
    batch), so every version conflict is between a command and what is already stored. When a
    batch conflicts, each of its commands is saved alone by its own caller, so only the stale
    ones hear ``IntegrityError``; any other failure of a batch is raised to all its callers.
    ``max_batch`` of 1 saves each command alone on its caller's thread, as if there were no
    group commit at all.
    """

    def __init__(self, save: SavesInOneTransaction[TAggregateID], *, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._save = save
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: deque[_Command[TAggregateID]] = deque()
        self._saving = False

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
        events: list[DomainEventProtocol[TAggregateID]] = [
            event for aggregate in aggregates for event in aggregate.collect_events()
        ]
        if not events:
            return []
        command = _Command(aggregates, events, threading.Condition(self._lock))
        with self._lock:
            self._queue.append(command)
            while not command.done:
                if self._saving:
                    command.wake.wait()
                else:
                    self._lead()
        if command.alone:
            return list(self._save(*command.events, *command.aggregates))
        if command.error is not None:
            raise command.error
        return command.recordings

    def _lead(self) -> None:
        """Save one batch; called and returns with the lock held, which the save goes without."""
        batch = self._take()
        self._saving = True
        self._lock.release()
        try:
            self._store(batch)
        finally:
            self._lock.acquire()
            self._saving = False
            for command in batch:
                command.done = True
                command.wake.notify()
            if self._queue:
                # Whoever is first in line leads the next batch; it arrived during this one.
                self._queue[0].wake.notify()

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
            else:
                for command in batch:
                    command.alone = True
            return
        except BaseException as exc:
            # Raised in each caller of the batch (as concurrent.futures does), not in the leader
            # as such: the leader's own command may wait for a later batch.
            for command in batch:
                command.error = exc
            return
        by_aggregate = {aggregate_id: command for command in batch for aggregate_id in command.ids}
        for recording in recordings:
            by_aggregate[recording.domain_event.originator_id].recordings.append(recording)
