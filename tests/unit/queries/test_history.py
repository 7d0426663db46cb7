"""The audit adapters on the library's in-memory store: any Application over the log will do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import typer

from commands.identity import Identity
from commands.tasks import Tasks
from domain.errors import TaskNotFound, UserNotFound
from domain.identity import EmailIndex
from domain.meta import meta
from ops.cli.instants import instant
from queries.history.export import EventStoreEventExport, to_json_line
from queries.history.replay import EventStoreTaskHistory, EventStoreUserHistory

MEMORY = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


@pytest.fixture
def tasks() -> Iterator[Tasks]:
    app = Tasks(env=MEMORY)
    yield app
    app.close()


@pytest.fixture
def identity() -> Iterator[Identity]:
    app = Identity(env=MEMORY)
    yield app
    app.close()


def test_a_deleted_task_keeps_its_history_and_is_gone_from_then_on(tasks: Tasks) -> None:
    owner = uuid4()
    task_id = tasks.create_task(owner_id=owner, title="a", meta=meta(owner, "1")).id
    tasks.update_task(task_id, actor=owner, changes={"title": "a"}, meta=meta(owner, "2"))
    tasks.delete_task(task_id, actor=owner, meta=meta(owner, "3"))
    history = EventStoreTaskHistory(tasks)

    entries = history.history(task_id, owner_id=owner)

    # The edit that changed nothing recorded nothing, so it has no line in the history.
    assert [(e.version, e.type) for e in entries] == [(1, "TaskCreated"), (2, "TaskDeleted")]
    assert history.as_of(task_id, entries[0].at, owner_id=owner).title == "a"
    with pytest.raises(TaskNotFound, match="deleted"):
        history.as_of(task_id, entries[1].at, owner_id=owner)
    with pytest.raises(TaskNotFound, match="did not exist"):
        history.as_of(task_id, entries[0].at - timedelta(microseconds=1), owner_id=owner)
    with pytest.raises(ValueError, match="timezone"):
        history.as_of(task_id, datetime(2030, 1, 1), owner_id=owner)


def test_an_id_of_another_kind_is_not_found(identity: Identity) -> None:
    user_id = identity.register(
        email="a@example.com", display_name="A", password_hash="h", meta=meta(None, "r")
    ).id
    with pytest.raises(TaskNotFound):
        EventStoreTaskHistory(identity).history(user_id, owner_id=None)
    with pytest.raises(UserNotFound):
        EventStoreUserHistory(identity).history(uuid4())
    with pytest.raises(UserNotFound):  # the email index is an aggregate, not a user
        EventStoreUserHistory(identity).history(EmailIndex.create_id("a@example.com"))


def test_export_pages_up_to_the_head_it_started_from(tasks: Tasks) -> None:
    owner = uuid4()
    for i in range(10):
        tasks.create_task(owner_id=owner, title=f"t{i}", meta=meta(owner, str(i)))
    events = EventStoreEventExport(tasks, page_size=3).events()

    first = next(events)
    # Written after the export began: not part of this export, so its count is fixed.
    tasks.create_task(owner_id=owner, title="late", meta=meta(owner, "late"))
    rest = list(events)

    exported = [first, *rest]
    assert [e.position for e in exported] == list(range(1, 11))
    assert [e.data["title"] for e in exported] == [f"t{i}" for i in range(10)]
    assert {e.application for e in exported} == {"Tasks"}


def test_export_window_and_redaction(identity: Identity) -> None:
    identity.register(email="a@example.com", display_name="A", password_hash="$h1$",
                      meta=meta(None, "1"))  # fmt: skip
    middle = datetime.now(UTC)
    identity.register(email="b@example.com", display_name="B", password_hash="$h2$",
                      meta=meta(None, "2"))  # fmt: skip
    export = EventStoreEventExport(identity, page_size=2)

    lines = [json.loads(to_json_line(e)) for e in export.events()]
    before = [e.type for e in export.events(until=middle)]
    after = [e.type for e in export.events(since=middle)]

    assert [line["type"] for line in lines] == ["UserRegistered", "EmailIndexClaimed"] * 2
    assert [line["data"].get("password_hash") for line in lines[::2]] == ["[redacted]"] * 2
    assert "$h1$" not in json.dumps(lines)
    assert before == after == ["UserRegistered", "EmailIndexClaimed"]


@pytest.mark.parametrize("text", ["2030-01-01T00:00:00", "2030-01-01", "monday", "2030-02-30Z"])
def test_cli_times_must_be_iso_with_a_zone(text: str) -> None:
    with pytest.raises(typer.Exit) as refused:
        instant(text, "--as-of")
    assert refused.value.exit_code == 2
    assert instant("2030-01-01T00:00:00+02:00", "--as-of") == datetime(2029, 12, 31, 22, tzinfo=UTC)
