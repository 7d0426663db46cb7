"""Commands are counted by outcome and appended events by type, on the in-memory store."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prometheus_client import REGISTRY

from commands.tasks import Tasks
from domain.errors import TaskNotFound
from domain.meta import meta


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_commands_and_events_are_counted_by_outcome_and_type() -> None:
    tasks = Tasks(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    owner = uuid4()
    before_ok = sample("taskledger_commands_total", command="update_task", outcome="ok")
    before_missing = sample(
        "taskledger_commands_total", command="update_task", outcome="TaskNotFound"
    )
    before_created = sample(
        "taskledger_events_appended_total", application="Tasks", type="Task.Created"
    )
    before_edited = sample(
        "taskledger_events_appended_total", application="Tasks", type="Task.Edited"
    )

    written = tasks.create_task(owner_id=owner, title="one", meta=meta(owner, "r1"))
    tasks.update_task(written.id, actor=owner, changes={"title": "two"}, meta=meta(owner, "r2"))
    with pytest.raises(TaskNotFound):
        tasks.update_task(uuid4(), actor=owner, changes={"title": "x"}, meta=meta(owner, "r3"))

    assert sample("taskledger_commands_total", command="update_task", outcome="ok") == (
        before_ok + 1
    )
    assert (
        sample("taskledger_commands_total", command="update_task", outcome="TaskNotFound")
        == before_missing + 1
    )
    assert (
        sample("taskledger_events_appended_total", application="Tasks", type="Task.Created")
        == before_created + 1
    )
    assert (
        sample("taskledger_events_appended_total", application="Tasks", type="Task.Edited")
        == before_edited + 1
    )
