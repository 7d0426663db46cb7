"""The task list contract, run against every adapter: in memory and MongoDB (SecantusDB).

Filters, sorts, search escaping, keyset pages, tombstones, stale writes and counters.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient

from projections.task_list.changes import TaskChange
from projections.task_list.memory import InMemoryTaskCollection
from projections.task_list.model import (
    SORT_FIELDS,
    Sort,
    TaskFilter,
    TaskQuery,
    TaskRow,
    row_document,
)
from projections.task_list.mongo import MongoTaskCollection
from projections.task_list.projection import TaskTable

ALICE, BOB = UUID(int=1), UUID(int=2)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=10)


def row(owner: UUID = ALICE, **fields: Any) -> TaskRow:
    base = TaskRow(
        id=uuid4(),
        owner_id=owner,
        title="task",
        description="",
        status="todo",
        priority="medium",
        due_date=None,
        labels=(),
        created_at=T0,
        updated_at=T0,
        version=1,
    )
    return replace(base, **fields)


def put(row: TaskRow, *, created: bool = True) -> TaskChange:
    fields = row_document(row)
    del fields["_id"]
    return TaskChange(
        row.id, row.version, row.version, created=created, owner_id=row.owner_id, fields=fields
    )


def deletion(row: TaskRow, version: int) -> TaskChange:
    return TaskChange(row.id, version, version, fields={"deleted": True, "version": version})


@pytest.fixture(params=["memory", "mongo"])
async def table(request: pytest.FixtureRequest) -> AsyncIterator[TaskTable]:
    if request.param == "memory":
        yield InMemoryTaskCollection()
        return
    url: str = request.getfixturevalue("mongo_url")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    tasks = MongoTaskCollection(client.get_default_database(), 1)
    await tasks.prepare()
    yield tasks
    await client.drop_database(client.get_default_database().name)
    await client.close()


async def test_owner_sees_own_live_tasks_only(table: TaskTable) -> None:
    mine, theirs, gone = row(), row(owner=BOB), row()
    await table.write([put(mine), put(theirs), put(gone)])
    await table.write([deletion(gone, 2)])
    assert await table.get(ALICE, mine.id) == mine
    assert await table.get(ALICE, theirs.id) is None
    assert await table.get(ALICE, gone.id) is None
    page = await table.page(ALICE, TaskQuery())
    assert [r.id for r in page.items] == [mine.id]
    assert page.next is None


async def test_stale_writes_change_nothing_and_tombstones_stay(table: TaskTable) -> None:
    task = row(title="v2", version=2)
    await table.write([put(task)])
    await table.write([put(replace(task, title="v1", version=1))])
    assert await table.get(ALICE, task.id) == task
    await table.write([deletion(task, 3)])
    await table.write([put(task)])  # a replayed creation must not resurrect it
    assert await table.get(ALICE, task.id) is None
    assert await table.owners([task.id, uuid4()]) == {task.id: ALICE}


async def test_filters(table: TaskTable) -> None:
    a = row(
        title="Buy milk",
        status="todo",
        priority="high",
        labels=("home", "shop"),
        due_date=T0 + timedelta(days=1),
    )
    b = row(
        title="Write report",
        description="quarterly MILK numbers",
        status="done",
        priority="low",
        labels=("work",),
        due_date=T0 + timedelta(days=5),
    )
    c = row(title="a.b (c)* [d] \\e", status="in_progress", labels=("home",))
    d = row(title="axb c d e", status="todo")
    await table.write([put(a), put(b), put(c), put(d)])

    async def ids(**flt: Any) -> set[UUID]:
        page = await table.page(ALICE, TaskQuery(filter=TaskFilter(**flt), limit=100))
        return {r.id for r in page.items}

    assert await ids(statuses=("todo",)) == {a.id, d.id}
    assert await ids(statuses=("todo", "done")) == {a.id, b.id, d.id}
    assert await ids(priorities=("high", "low")) == {a.id, b.id}
    assert await ids(labels=("home",)) == {a.id, c.id}
    assert await ids(labels=("home", "shop")) == {a.id}
    assert await ids(text="milk") == {a.id, b.id}  # either field, any case
    assert await ids(text="a.b (c)* [d] \\e") == {c.id}  # metacharacters are literal
    assert await ids(text="a.b") == {c.id}
    assert await ids(text=".*") == set()
    assert await ids(due_before=T0 + timedelta(days=5)) == {a.id}  # strict, no due date out
    assert await ids(due_after=T0 + timedelta(days=1)) == {b.id}
    assert await ids(statuses=("todo",), text="MILK", labels=("shop",)) == {a.id}


def expected_order(rows: list[TaskRow], sort: Sort) -> list[UUID]:
    ordered = sorted(rows, key=lambda r: (sort.value(r), str(r.id)), reverse=sort.descending)
    return [r.id for r in ordered]


async def walk(table: TaskTable, query: TaskQuery) -> list[UUID]:
    seen: list[UUID] = []
    while True:
        page = await table.page(ALICE, query)
        seen.extend(r.id for r in page.items)
        if page.next is None:
            return seen
        query = replace(query, after=page.next)


@pytest.mark.parametrize("sort", [s + k for k in SORT_FIELDS for s in ("", "-")])
async def test_sorts_and_pages_with_ties(table: TaskTable, sort: str) -> None:
    rng = random.Random(sort)
    rows = [
        row(
            created_at=T0 + timedelta(seconds=rng.randint(0, 2)),
            updated_at=T0 + timedelta(seconds=rng.randint(0, 2)),
            due_date=rng.choice([None, T0, T0 + timedelta(days=1)]),
            priority=rng.choice(["low", "medium", "high"]),
        )
        for _ in range(13)
    ]
    await table.write([put(r) for r in rows])
    parsed = Sort.parse(sort)
    whole = await table.page(ALICE, TaskQuery(sort=parsed, limit=100))
    assert [r.id for r in whole.items] == expected_order(rows, parsed)
    assert await walk(table, TaskQuery(sort=parsed, limit=3)) == expected_order(rows, parsed)


async def test_due_date_ascending_puts_undated_last(table: TaskTable) -> None:
    undated, later, sooner = row(), row(due_date=T0 + timedelta(days=2)), row(due_date=T0)
    await table.write([put(undated), put(later), put(sooner)])
    page = await table.page(ALICE, TaskQuery(sort=Sort("due_date", descending=False)))
    assert [r.id for r in page.items] == [sooner.id, later.id, undated.id]


async def test_counts(table: TaskTable) -> None:
    rows = [
        row(status="todo", due_date=NOW - timedelta(days=1)),  # overdue
        row(status="in_progress", due_date=NOW - timedelta(seconds=1)),  # overdue
        row(status="done", due_date=NOW - timedelta(days=1)),  # done: never overdue
        row(status="todo", due_date=NOW + timedelta(days=1)),
        row(status="todo"),
        row(owner=BOB, status="todo", due_date=NOW - timedelta(days=1)),
    ]
    gone = row(status="todo", due_date=NOW - timedelta(days=3))
    await table.write([put(r) for r in [*rows, gone]])
    await table.write([deletion(gone, 2)])
    counts = await table.counts(ALICE, NOW)
    assert (counts.todo, counts.in_progress, counts.done, counts.overdue) == (3, 1, 1, 2)
    assert counts.total == 5


# --- Pagination under concurrent change (hypothesis), for each adapter. ---

TableFactory = Callable[[], Awaitable[tuple[TaskTable, Callable[[], Awaitable[None]]]]]


async def walk_while_changing(
    table: TaskTable, rows: list[TaskRow], sort: Sort, limit: int, edits: list[int], seed: int
) -> None:
    """Between pages: retitle and re-status tasks (their sort keys stay), create new ones with
    any keys, delete some of the new ones. Tasks present throughout: each seen exactly once."""
    rng = random.Random(seed)
    await table.write([put(r) for r in rows])
    current = {r.id: r for r in rows}
    extra: list[TaskRow] = []
    query = TaskQuery(sort=sort, limit=limit)
    seen: list[UUID] = []
    for step in itertools.count():
        page = await table.page(ALICE, query)
        seen.extend(r.id for r in page.items)
        if page.next is None:
            break
        query = replace(query, after=page.next)
        for _ in range(edits[step % len(edits)] if edits else 0):
            victim = current[rng.choice(list(current))]
            changed = replace(
                victim,
                title=f"x{step}",
                version=victim.version + 1,
                status=rng.choice(["todo", "done"]),
            )
            if sort.key != "updated_at":
                changed = replace(changed, updated_at=changed.updated_at + timedelta(hours=1))
            current[victim.id] = changed
            await table.write([put(changed, created=False)])
            newcomer = row(
                created_at=T0 + timedelta(seconds=rng.randint(0, 3)),
                priority=rng.choice(["low", "high"]),
            )
            extra.append(newcomer)
            await table.write([put(newcomer)])
            if rng.random() < 0.5:
                await table.write([deletion(extra[-1], 2)])
    assert len(seen) == len(set(seen)), "a task was seen twice"
    assert set(current) <= set(seen), "a task present throughout was skipped"


tie_rows = st.lists(
    st.builds(
        lambda c, u, d, p: row(
            created_at=T0 + timedelta(seconds=c),
            updated_at=T0 + timedelta(seconds=u),
            due_date=None if d is None else T0 + timedelta(days=d),
            priority=p,
        ),
        st.integers(0, 3),
        st.integers(0, 3),
        st.none() | st.integers(0, 2),
        st.sampled_from(["low", "medium", "high"]),
    ),
    min_size=1,
    max_size=25,
)
walks = dict(
    rows=tie_rows,
    sort=st.sampled_from([Sort(k, d) for k in SORT_FIELDS for d in (False, True)]),
    limit=st.integers(1, 6),
    edits=st.lists(st.integers(0, 3), max_size=5),
    seed=st.integers(0, 1000),
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(**walks)
def test_pages_in_memory_never_repeat_or_skip(
    rows: list[TaskRow], sort: Sort, limit: int, edits: list[int], seed: int
) -> None:
    asyncio.run(walk_while_changing(InMemoryTaskCollection(), rows, sort, limit, edits, seed))


def test_pages_in_mongo_never_repeat_or_skip(mongo_url: str) -> None:
    generations = iter(range(1, 10_000))

    async def one(rows: list[TaskRow], sort: Sort, limit: int, edits: list[int], seed: int) -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
        tasks = MongoTaskCollection(client.get_default_database(), next(generations))
        try:
            await walk_while_changing(tasks, rows, sort, limit, edits, seed)
        finally:
            await tasks.drop()
            await client.close()

    @settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(**walks)
    def check(rows: list[TaskRow], sort: Sort, limit: int, edits: list[int], seed: int) -> None:
        asyncio.run(one(rows, sort, limit, edits, seed))

    check()
