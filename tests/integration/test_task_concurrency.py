"""Many writers on one task lose no update, on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

from domain.errors import ConcurrentWrite, VersionMismatch
from domain.meta import meta
from ops.bootstrap import build_write_side
from tests.fixtures.api import make_settings

WRITERS = 8
WRITES_EACH = 12


def test_concurrent_changes_lose_no_update(tmp_path: Path, event_store_url: str) -> None:
    side = build_write_side(make_settings(tmp_path, event_store_url, "redis://unused", "x:"))
    owner = uuid4()
    task_id = side.tasks.create_task(owner_id=owner, title="t", meta=meta(owner, "c")).id

    def writer(n: int) -> tuple[int, int]:
        ok = conflicts = 0
        for i in range(WRITES_EACH):
            try:
                side.tasks.update_task(
                    task_id,
                    actor=owner,
                    changes={"title": f"w{n}-{i}"},
                    meta=meta(owner, f"w{n}-{i}"),
                )
                ok += 1
            except ConcurrentWrite:
                conflicts += 1
        return ok, conflicts

    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))
    succeeded = sum(ok for ok, _ in results)

    stored = side.tasks.get_owned(task_id, owner)
    assert stored.version == 1 + succeeded
    assert succeeded + sum(c for _, c in results) == WRITERS * WRITES_EACH
    assert stored.title in {f"w{n}-{i}" for n in range(WRITERS) for i in range(WRITES_EACH)}
    side.close()


def test_if_match_writers_never_overwrite_each_other(tmp_path: Path, event_store_url: str) -> None:
    side = build_write_side(make_settings(tmp_path, event_store_url, "redis://unused", "x:"))
    owner = uuid4()
    task_id = side.tasks.create_task(owner_id=owner, title="t", meta=meta(owner, "c")).id

    def writer(n: int) -> int:
        ok = 0
        for i in range(WRITES_EACH):
            version = side.tasks.get_owned(task_id, owner).version
            try:
                side.tasks.update_task(
                    task_id,
                    actor=owner,
                    changes={"description": f"{n}.{i}"},
                    expected_version=version,
                    meta=meta(owner, "c"),
                )
                ok += 1
            except (VersionMismatch, ConcurrentWrite):
                pass
        return ok

    with ThreadPoolExecutor(WRITERS) as pool:
        succeeded = sum(pool.map(writer, range(WRITERS)))

    assert side.tasks.get_owned(task_id, owner).version == 1 + succeeded
    side.close()
