"""GroupCommit over a fake store: concurrent commands share saves, each keeps its own outcome.

The first save is held (a slow transaction) while the others queue up, so what shares which
save is decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Notification, Recording
from prometheus_client import REGISTRY

from commands.group_commit import GroupCommit
from commands.tasks import Tasks
from domain.meta import meta
from domain.tasks import Task

OWNER = uuid4()
META = meta(OWNER, "test")


class FakeStore:
    """Stores events in memory with the event store's rules: versions follow on, all or none.

    ``hold()`` keeps the next save waiting (a slow transaction) until the block ends.
    """

    def __init__(self) -> None:
        self.versions: dict[UUID, int] = {}
        self.saves: list[list[DomainEventProtocol[UUID]]] = []
        self.threads: list[str] = []
        self.fail_with: BaseException | None = None
        self._lock = threading.Lock()
        self._held: threading.Event | None = None
        self.holding = threading.Event()

    @contextmanager
    def hold(self) -> Iterator[None]:
        held = self._held = threading.Event()
        try:
            yield
        finally:
            held.set()

    def save(self, *objs: Any) -> list[Recording[UUID]]:
        held, self._held = self._held, None
        if held is not None:
            self.holding.set()
            held.wait()
        events: list[DomainEventProtocol[UUID]] = []
        for obj in objs:
            if hasattr(obj, "collect_events"):
                events.extend(obj.collect_events())
            else:
                events.append(obj)
        with self._lock:
            self.saves.append(events)
            self.threads.append(threading.current_thread().name)
            if self.fail_with is not None:
                raise self.fail_with
            versions = dict(self.versions)
            for e in events:
                if e.originator_version != versions.get(e.originator_id, 0) + 1:
                    raise IntegrityError(f"{e.originator_id} v{e.originator_version} exists")
                versions[e.originator_id] = e.originator_version
            self.versions = versions
            recordings: list[Recording[UUID]] = []
            for e in events:
                position = sum(len(s) for s in self.saves[:-1]) + len(recordings) + 1
                notification = Notification(
                    id=position,
                    originator_id=e.originator_id,
                    originator_version=e.originator_version,
                    topic=type(e).__qualname__,
                    state=b"",
                )
                recordings.append(Recording(e, notification))
            return recordings


def new_task(title: str = "t") -> Task:
    return Task.create(owner_id=OWNER, title=title, meta=META)


def wait_until_waiting(group: GroupCommit[UUID], count: int) -> None:
    deadline = time.monotonic() + 10
    while group.waiting != count:
        assert time.monotonic() < deadline, f"{group.waiting} commands queued, not {count}"
        time.sleep(0.001)


def submit_while_held(
    store: FakeStore,
    group: GroupCommit[UUID],
    pool: ThreadPoolExecutor,
    first: Task,
    others: list[Task],
) -> tuple[Future[list[Recording[UUID]]], list[Future[list[Recording[UUID]]]]]:
    """``first`` is saved alone and held; ``others`` queue up behind it, then it is let go."""
    with store.hold():
        leader = pool.submit(group.save, first)
        store.holding.wait(timeout=10)
        futures = []
        for task in others:
            futures.append(pool.submit(group.save, task))
            # One at a time, so the queue's order is the list's order.
            wait_until_waiting(group, len(futures))
    return leader, futures


def test_commands_that_arrive_during_a_save_share_the_next_one() -> None:
    store = FakeStore()
    batches: list[int] = []
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=256, batched=batches.append)
    tasks = [new_task(f"t{n}") for n in range(20)]

    with ThreadPoolExecutor(20) as pool:
        leader, futures = submit_while_held(store, group, pool, tasks[0], tasks[1:])
        results = [leader.result(), *(f.result() for f in futures)]

    assert [len(s) for s in store.saves] == batches == [1, 19]
    positions = []
    for task, recordings in zip(tasks, results, strict=True):
        assert [r.domain_event.originator_id for r in recordings] == [task.id]
        positions.append(recordings[0].notification.id)
    assert sorted(positions) == list(range(1, 21))
    assert store.versions == {task.id: 1 for task in tasks}


def test_a_batch_holds_at_most_max_batch_commands() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=4)
    tasks = [new_task() for _ in range(10)]

    with ThreadPoolExecutor(10) as pool:
        leader, futures = submit_while_held(store, group, pool, tasks[0], tasks[1:])
        for future in [leader, *futures]:
            future.result()

    assert [len(s) for s in store.saves] == [1, 4, 4, 1]


def test_a_stale_command_fails_alone_and_the_rest_of_its_batch_is_stored() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=256)
    contested = new_task("v1")
    group.save(contested)
    stale = copy.deepcopy(contested)
    contested.edit({"title": "v2 wins"}, META)
    group.save(contested)
    stale.edit({"title": "v2 from a stale read"}, META)
    fresh = [new_task(f"f{n}") for n in range(3)]

    with ThreadPoolExecutor(5) as pool:
        leader, futures = submit_while_held(
            store, group, pool, new_task("first"), [fresh[0], stale, fresh[1], fresh[2]]
        )
        leader.result()
        with pytest.raises(IntegrityError):
            futures[1].result()
        stored = [futures[n].result() for n in (0, 2, 3)]

    # The batch of four failed as a whole, then by halves, until the stale one stood alone.
    assert [len(s) for s in store.saves][3:] == [4, 2, 1, 1, 2]
    for task, recordings in zip(fresh, stored, strict=True):
        assert [r.domain_event.originator_id for r in recordings] == [task.id]
        assert store.versions[task.id] == 1
    assert store.versions[contested.id] == 2
    ids = [r.notification.id for recordings in stored for r in recordings]
    assert len(set(ids)) == 3


def test_two_commands_on_one_aggregate_never_share_a_batch() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=256)
    task = new_task()
    group.save(task)
    first, second = copy.deepcopy(task), copy.deepcopy(task)
    first.edit({"title": "first"}, META)
    second.edit({"title": "second"}, META)
    other = new_task("other")

    with ThreadPoolExecutor(5) as pool:
        leader, futures = submit_while_held(
            store, group, pool, new_task("first"), [first, second, other]
        )
        leader.result()
        assert futures[0].result()[0].domain_event.originator_version == 2
        assert futures[2].result()[0].domain_event.originator_id == other.id
        # Both read version 1: the second in line conflicts on its own, and is told so.
        with pytest.raises(IntegrityError):
            futures[1].result()

    batches = [{e.originator_id for e in s} for s in store.saves]
    assert batches[2:] == [{task.id, other.id}, {task.id}]
    assert store.versions[task.id] == 2


def test_a_batch_failure_reaches_every_caller_and_the_next_batch_still_runs() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=256)
    tasks = [new_task() for _ in range(4)]

    with ThreadPoolExecutor(4) as pool:
        with store.hold():
            leader = pool.submit(group.save, tasks[0])
            store.holding.wait(timeout=10)
            futures = [pool.submit(group.save, t) for t in tasks[1:3]]
            wait_until_waiting(group, 2)
            store.fail_with = RuntimeError("connection lost")
        for future in [leader, *futures]:
            with pytest.raises(RuntimeError, match="connection lost"):
                future.result()

    store.fail_with = None
    assert [r.domain_event.originator_id for r in group.save(tasks[3])] == [tasks[3].id]
    assert [len(s) for s in store.saves] == [1, 2, 1]


def test_max_batch_of_one_saves_on_the_callers_thread() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=1)
    task = new_task()

    def save() -> list[Recording[UUID]]:
        return group.save(task)

    with ThreadPoolExecutor(1, thread_name_prefix="caller") as pool:
        recordings = pool.submit(save).result()

    assert [r.domain_event.originator_id for r in recordings] == [task.id]
    assert store.threads == ["caller_0"]


def test_nothing_pending_is_not_saved() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=8)
    task = new_task()
    group.save(task)

    assert group.save(task) == []
    assert len(store.saves) == 1


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(FakeStore().save, max_batch=0)


async def test_coroutines_share_saves_made_on_the_committer_thread() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=256)
    tasks = [new_task(f"t{n}") for n in range(10)]

    with store.hold():
        first = asyncio.create_task(group.save_async(tasks[0]))
        assert await asyncio.to_thread(store.holding.wait, 10)
        rest = [asyncio.create_task(group.save_async(t)) for t in tasks[1:]]
        await asyncio.to_thread(wait_until_waiting, group, len(rest))
    results = await asyncio.gather(first, *rest)

    assert [len(s) for s in store.saves] == [1, 9]
    assert set(store.threads) == {"group-commit_0"}
    for task, recordings in zip(tasks, results, strict=True):
        assert [r.domain_event.originator_id for r in recordings] == [task.id]
    group.close()


async def test_threads_and_coroutines_share_a_batch_and_conflicts_reach_coroutines() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=256)
    task = new_task()
    await group.save_async(task)
    stale = copy.deepcopy(task)
    task.edit({"title": "stored first"}, META)
    await group.save_async(task)
    stale.edit({"title": "from a stale read"}, META)
    from_thread, from_coroutine = new_task("thread"), new_task("coroutine")

    with ThreadPoolExecutor(1) as pool:
        with store.hold():
            first = asyncio.create_task(group.save_async(new_task("first")))
            assert await asyncio.to_thread(store.holding.wait, 10)
            threaded = pool.submit(group.save, from_thread)
            coroutines = [asyncio.create_task(group.save_async(t)) for t in (from_coroutine, stale)]
            await asyncio.to_thread(wait_until_waiting, group, 3)
        await first
        outcomes = await asyncio.gather(*coroutines, return_exceptions=True)
        assert [r.domain_event.originator_id for r in threaded.result()] == [from_thread.id]

    recordings, refused = outcomes
    assert isinstance(recordings, list)
    assert [r.domain_event.originator_id for r in recordings] == [from_coroutine.id]
    assert isinstance(refused, IntegrityError)
    assert store.versions[task.id] == 2
    group.close()


def test_close_saves_what_is_queued_and_then_refuses() -> None:
    store = FakeStore()
    group: GroupCommit[UUID] = GroupCommit(store.save, max_batch=8)
    tasks = [new_task() for _ in range(3)]

    with ThreadPoolExecutor(3) as pool:
        leader, futures = submit_while_held(store, group, pool, tasks[0], tasks[1:])
        group.close()
        assert all(f.result() for f in [leader, *futures])

    with pytest.raises(RuntimeError):
        group.save(new_task())
    assert store.versions == {t.id: 1 for t in tasks}


def test_the_applications_count_commands_per_transaction() -> None:
    tasks = Tasks(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, group_commit_max=8)
    labels = {"application": "Tasks"}
    before = REGISTRY.get_sample_value("taskledger_group_commit_commands_count", labels) or 0.0

    tasks.create_task(owner_id=OWNER, title="counted", meta=META)

    after = REGISTRY.get_sample_value("taskledger_group_commit_commands_count", labels)
    assert after == before + 1
    tasks.close()
