"""Replaying a task's stored events rebuilds exactly the state the commands produced."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from commands.tasks import Tasks
from domain.meta import meta
from domain.tasks import Task
from tests.strategies import commands, due_dates, labels, priorities, titles


def _apply(task: Task, command: str, args: dict[str, Any]) -> None:
    m = meta(task.owner_id, "req")
    if command == "delete":
        task.delete(m)
        return
    edits = {k: v for k, v in args.items() if k != "status"}
    if edits:
        task.edit(edits, m)
    if "status" in args:
        task.change_status(args["status"], m)


@settings(max_examples=60, deadline=None)
@given(title=titles, priority=priorities, due=due_dates, initial_labels=labels, script=commands)
def test_replay_equals_fold(
    title: str,
    priority: Any,
    due: datetime | None,
    initial_labels: list[str],
    script: list[tuple[str, dict[str, Any]]],
) -> None:
    app = Tasks(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    owner = uuid4()
    task = Task.create(
        owner_id=owner,
        title=title,
        priority=priority,
        due_date=due,
        labels=initial_labels,
        meta=meta(owner, "req"),
    )
    expected_events = 1
    for command, args in script:
        before = task.version
        _apply(task, command, args)
        expected_events += task.version - before
    app.save(task)

    replayed: Task = app.repository.get(task.id)

    assert replayed.snapshot_state() == task.snapshot_state()
    assert replayed.version == expected_events


@settings(max_examples=60, deadline=None)
@given(
    title=titles,
    due=due_dates,
    initial_labels=labels,
    changes=st.lists(
        st.fixed_dictionaries(
            {}, optional={"title": titles, "due_date": due_dates, "labels": labels}
        ),
        max_size=5,
    ),
)
def test_events_round_trip_through_the_store_encoding(
    title: str, due: datetime | None, initial_labels: list[str], changes: list[dict[str, Any]]
) -> None:
    app = Tasks(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    owner = uuid4()
    task = Task.create(
        owner_id=owner,
        title=title,
        due_date=due,
        labels=initial_labels,
        meta=meta(owner, "corr", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    for change in changes:
        task.edit(change, meta(owner, "corr"))
    events = task.collect_events()
    for event in events:
        stored = app.mapper.to_stored_event(event)
        decoded = app.mapper.to_domain_event(stored)
        assert decoded == event
        assert type(decoded) is type(event)


def test_an_edit_that_changes_nothing_records_no_event() -> None:
    owner = uuid4()
    task = Task.create(owner_id=owner, title="same", labels=["a"], meta=meta(owner, "r"))
    assert task.edit({"title": "same", "labels": ["a"]}, meta(owner, "r")) is False
    assert task.version == 1


def test_every_event_carries_actor_and_correlation() -> None:
    owner = uuid4()
    task = Task.create(owner_id=owner, title="t", meta=meta(owner, "req-1", "tp"))
    task.change_status("done", meta(owner, "req-2"))  # type: ignore[arg-type]
    metas = [event.meta for event in task.collect_events()]  # type: ignore[attr-defined]
    assert metas == [
        {"actor_id": str(owner), "correlation_id": "req-1", "traceparent": "tp"},
        {"actor_id": str(owner), "correlation_id": "req-2", "traceparent": None},
    ]
