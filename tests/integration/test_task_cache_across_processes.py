"""The Tasks write side caches recent tasks, yet two processes on one store never act on a
stale task: each read fast-forwards the cached task past every other process's writes."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest

from domain.errors import VersionMismatch
from domain.meta import meta
from ops.bootstrap import WriteSide, build_write_side
from ops.settings import Settings


@pytest.fixture
def two_write_sides(settings: Settings) -> Iterator[tuple[WriteSide, WriteSide]]:
    one, two = build_write_side(settings), build_write_side(settings)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def test_a_cached_task_sees_the_other_process_writes(
    two_write_sides: tuple[WriteSide, WriteSide],
) -> None:
    a, b = (side.tasks for side in two_write_sides)
    owner = uuid4()

    def edit(app: object, version: int | None, title: str) -> int:
        written = app.update_task(  # type: ignore[attr-defined]
            task_id,
            actor=owner,
            changes={"title": title},
            expected_version=version,
            meta=meta(owner, "r"),
        )
        return int(written.version)

    task_id = a.create_task(owner_id=owner, title="v1", meta=meta(owner, "r")).id
    assert edit(b, 1, "b-first") == 2  # b has the task cached now
    assert edit(a, 2, "a-second") == 3  # a writes past b's cached state
    with pytest.raises(VersionMismatch):  # b's If-Match of 2 is stale: 412, not a lost update
        edit(b, 2, "b-stale")
    assert edit(b, 3, "b-third") == 4
    assert edit(b, None, "b-fourth") == 5  # no If-Match: applied on the latest state
    seen = a.get_owned(task_id, owner)
    assert (seen.version, seen.title) == (5, "b-fourth")
    assert b.repository.cache is not None  # the cache is on: this test is about it
