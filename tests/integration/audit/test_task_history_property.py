"""History and as_of equal a hand-computed model for random command sequences.

Commands run one at a time or as a group of concurrent writers (threads). The store picks the
order of a group's writes; each write's returned version reveals it, and the model, applied
in that order, must predict every version, event type, actor and old/new value. On both
event stores.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from commands.written import Written
from domain.errors import ConcurrentWrite, TaskNotFound
from domain.meta import meta
from domain.tasks import Priority, Status
from ops.audit import AuditLogs
from ops.bootstrap import WriteSide
from queries.history.ports import HistoryEntry, TaskState

TICK = timedelta(microseconds=1)
FIELDS = ("title", "description", "status", "priority", "due_date", "labels")

# Small alphabets, so that edits which change nothing (and must record nothing) are common.
words = st.sampled_from(["a", "b", "c"]) | st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
)
due_dates = (
    st.none()
    | st.sampled_from([datetime(2030, 1, 1, tzinfo=UTC)])
    | st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
)
labels = st.lists(st.sampled_from(["x", "y", "z"]) | words, max_size=4)
edits = st.fixed_dictionaries(
    {},
    optional={
        "title": words,
        "description": st.sampled_from(["", "d"]) | words,
        "status": st.sampled_from(list(Status)),
        "priority": st.sampled_from(list(Priority)),
        "due_date": due_dates,
        "labels": labels,
    },
)
DELETE: dict[str, Any] = {"delete": True}
# One command in ten deletes: enough to see deletes (and writes refused after them) often.
commands = st.integers(0, 9).flatmap(lambda n: st.just(DELETE) if n == 0 else edits)
# A group of one runs alone; a larger group runs as concurrent writers.
groups = st.lists(commands, min_size=1, max_size=4)
creations = st.fixed_dictionaries(
    {
        "title": words,
        "description": words,
        "status": st.sampled_from(list(Status)),
        "priority": st.sampled_from(list(Priority)),
        "due_date": due_dates,
        "labels": labels,
    }
)


def norm(name: str, value: Any) -> Any:
    if name == "labels":
        return list(dict.fromkeys(value))
    if name in ("status", "priority"):
        return str(value)
    return value


@dataclass
class Model:
    """The task as the API promises it, computed by hand, event by event."""

    fields: dict[str, Any]
    deleted: bool = False
    version: int = 1
    # (type, changes as {field: (old, new)}, fields after, deleted after) per version
    events: list[tuple[str, dict[str, tuple[Any, Any]], dict[str, Any], bool]] = field(
        default_factory=list
    )

    @classmethod
    def created(cls, values: dict[str, Any]) -> Model:
        fields = {name: norm(name, values[name]) for name in FIELDS}
        model = cls(fields)
        model.events.append(
            ("TaskCreated", {k: (None, v) for k, v in fields.items()}, dict(fields), False)
        )
        return model

    def _record(self, kind: str, changes: dict[str, tuple[Any, Any]]) -> None:
        self.version += 1
        self.events.append((kind, changes, dict(self.fields), self.deleted))

    def apply(self, command: dict[str, Any]) -> None:
        if command is DELETE:
            self.deleted = True
            self._record("TaskDeleted", {"deleted": (False, True)})
            return
        delta = {
            name: (self.fields[name], norm(name, value))
            for name, value in command.items()
            if name != "status" and self.fields[name] != norm(name, value)
        }
        if delta:
            self.fields.update({name: new for name, (_, new) in delta.items()})
            self._record("TaskEdited", delta)
        status = command.get("status")
        if status is not None and str(status) != self.fields["status"]:
            change = (self.fields["status"], str(status))
            self.fields["status"] = str(status)
            self._record("TaskStatusChanged", {"status": change})


@dataclass
class Outcome:
    command: dict[str, Any]
    started: datetime
    finished: datetime
    result: Written | Exception


def run(side: WriteSide, task_id: UUID, owner: UUID, command: dict[str, Any]) -> Outcome:
    started = datetime.now(UTC)
    result: Written | Exception
    try:
        if command is DELETE:
            result = side.tasks.delete_task(task_id, actor=owner, meta=meta(owner, "del"))
        else:
            result = side.tasks.update_task(
                task_id, actor=owner, changes=command, meta=meta(owner, "upd")
            )
    except (TaskNotFound, ConcurrentWrite) as exc:
        result = exc
    return Outcome(command, started, datetime.now(UTC), result)


def run_concurrently(
    side: WriteSide, task_id: UUID, owner: UUID, group: list[dict[str, Any]]
) -> list[Outcome]:
    barrier = threading.Barrier(len(group))
    outcomes: list[Outcome | None] = [None] * len(group)

    def writer(i: int) -> None:
        barrier.wait()
        outcomes[i] = run(side, task_id, owner, group[i])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(group))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [o for o in outcomes if o is not None]


def changes_of(entry: HistoryEntry) -> dict[str, tuple[Any, Any]]:
    return {name: (c.old, c.new) for name, c in entry.changes.items()}


def assert_state(
    state: TaskState, fields: dict[str, Any], version: int, entries: list[HistoryEntry]
) -> None:
    assert {name: norm(name, getattr(state, name)) for name in FIELDS} == fields
    assert isinstance(state.labels, tuple)
    assert state.version == version
    assert state.created_at == entries[0].at
    assert state.updated_at == entries[version - 1].at


@pytest.mark.postgres
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(creation=creations, script=st.lists(groups, max_size=6))
def test_history_and_as_of_follow_the_model(
    write_side: WriteSide,
    audit_logs: AuditLogs,
    creation: dict[str, Any],
    script: list[list[dict[str, Any]]],
) -> None:
    owner, stranger = uuid4(), uuid4()
    started = datetime.now(UTC)
    written = write_side.tasks.create_task(owner_id=owner, meta=meta(owner, "new"), **creation)
    windows = [(started, datetime.now(UTC))]  # per version: when its command ran
    model = Model.created(creation)

    for group in script:
        if len(group) == 1:
            # Alone, a write is fully predictable: refused once deleted, empty when nothing
            # changes, and otherwise exactly the model's events.
            (outcome,) = [run(write_side, written.id, owner, group[0])]
            if model.deleted:
                assert isinstance(outcome.result, TaskNotFound)
                continue
            before = model.version
            model.apply(outcome.command)
            assert isinstance(outcome.result, Written)
            assert outcome.result.version == model.version
            assert (outcome.result.position is None) == (model.version == before)
            windows += [(outcome.started, outcome.finished)] * (model.version - before)
            continue
        outcomes = run_concurrently(write_side, written.id, owner, group)
        landed = [o for o in outcomes if isinstance(o.result, Written) and o.result.position]
        event(f"concurrent writes that landed: {len(landed)}")
        for outcome in sorted(landed, key=lambda o: o.result.version):  # type: ignore[union-attr]
            assert isinstance(outcome.result, Written)
            before = model.version
            model.apply(outcome.command)
            # The model, in the store's order, predicts exactly where each write landed.
            assert model.version == outcome.result.version > before
            windows += [(outcome.started, outcome.finished)] * (model.version - before)
        for outcome in outcomes:
            if isinstance(outcome.result, TaskNotFound):
                assert model.deleted

    event(f"deleted: {model.deleted}")
    history = list(audit_logs.task_history().history(written.id, owner_id=owner))
    expected = [
        (v + 1, kind, str(owner), changes) for v, (kind, changes, _, _) in enumerate(model.events)
    ]
    assert [(e.version, e.type, e.actor_id, changes_of(e)) for e in history] == expected
    for entry, (opened, closed) in zip(history, windows, strict=True):
        assert opened <= entry.at <= closed
    assert [e.at for e in history] == sorted(e.at for e in history)

    past = audit_logs.task_history()
    with pytest.raises(TaskNotFound):
        past.as_of(written.id, history[0].at - TICK, owner_id=owner)
    instants = (
        [e.at for e in history]
        + [a.at + (b.at - a.at) / 2 for a, b in itertools.pairwise(history)]
        + [datetime.now(UTC) + timedelta(days=1)]
    )
    for instant in instants:
        # The state at an instant is the one after the last event stamped at or before it.
        last = max(v for v, e in enumerate(history, 1) if e.at <= instant)
        _, _, fields, deleted = model.events[last - 1]
        if deleted:
            with pytest.raises(TaskNotFound):
                past.as_of(written.id, instant, owner_id=owner)
        else:
            assert_state(past.as_of(written.id, instant, owner_id=owner), fields, last, history)
            assert past.as_of(written.id, instant, owner_id=None).version == last
        with pytest.raises(TaskNotFound):
            past.as_of(written.id, instant, owner_id=stranger)
    with pytest.raises(TaskNotFound):
        past.history(written.id, owner_id=stranger)
    assert len(past.history(written.id, owner_id=None)) == len(history)
