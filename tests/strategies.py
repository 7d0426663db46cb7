"""hypothesis strategies shared by the property tests: task commands as plain data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from domain.tasks import Priority, Status

titles = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")
labels = st.lists(st.text(min_size=1, max_size=8), max_size=4, unique=True)
due_dates = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
statuses = st.sampled_from(list(Status))
priorities = st.sampled_from(list(Priority))

edit_changes = st.fixed_dictionaries(
    {},
    optional={
        "title": titles,
        "description": st.text(max_size=40),
        "priority": priorities,
        "due_date": due_dates,
        "labels": labels,
        "status": statuses,
    },
)

# A command is ("edit", changes) or ("delete", {}); delete ends the sequence.
commands: st.SearchStrategy[list[tuple[str, dict[str, Any]]]] = st.lists(
    st.tuples(st.just("edit"), edit_changes), max_size=12
).flatmap(
    lambda edits: st.booleans().map(lambda delete: edits + ([("delete", {})] if delete else []))
)
