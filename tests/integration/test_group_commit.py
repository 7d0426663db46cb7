"""Group commit on the real stores: many threads' commands share transactions and lose nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import UUID, uuid4

from commands.written import Written
from domain.errors import ConcurrentWrite, EmailTaken
from domain.meta import meta
from domain.tasks import Priority
from ops.bootstrap import WriteSide, build_write_side
from tests.fixtures.api import make_settings

THREADS = 12
CREATES_EACH = 8
SHARED_WRITES_EACH = 6


def write_side(tmp_path: Path, event_store_url: str) -> WriteSide:
    side = build_write_side(make_settings(tmp_path, event_store_url, "redis://unused", "x:"))
    assert side.tasks.commits.max_batch > 1
    assert side.identity.commits.max_batch > 1
    return side


def assert_positions_are_their_own(side: WriteSide, written: list[Written]) -> None:
    """Each command's position is the notification of its own aggregate's new version."""
    positions = [w.position for w in written]
    assert None not in positions
    assert len(set(positions)) == len(positions)
    for w in written:
        assert w.position is not None
        [notification] = side.tasks.recorder.select_notifications(w.position, 1)
        assert (notification.originator_id, notification.originator_version) == (w.id, w.version)


def test_concurrent_creates_and_changes_are_all_stored(
    tmp_path: Path, event_store_url: str
) -> None:
    side = write_side(tmp_path, event_store_url)
    owner = uuid4()
    shared = side.tasks.create_task(owner_id=owner, title="shared", meta=meta(owner, "c")).id

    def worker(n: int) -> tuple[list[Written], list[Written], int]:
        created, changed, conflicts = [], [], 0
        for i in range(CREATES_EACH):
            created.append(
                side.tasks.create_task(
                    owner_id=owner,
                    title=f"task {n}.{i}",
                    description=f"by worker {n}",
                    priority=Priority.HIGH if i % 2 else Priority.LOW,
                    labels=[f"w{n}", f"i{i}"],
                    meta=meta(owner, f"create-{n}-{i}"),
                )
            )
        for i in range(SHARED_WRITES_EACH):
            try:
                changed.append(
                    side.tasks.update_task(
                        shared,
                        actor=owner,
                        changes={"description": f"{n}.{i}"},
                        meta=meta(owner, f"change-{n}-{i}"),
                    )
                )
            except ConcurrentWrite:
                conflicts += 1
        # Every worker edits its own tasks too, in the same stream of commands.
        for w in created[:3]:
            changed.append(
                side.tasks.update_task(
                    w.id, actor=owner, changes={"status": "done"}, meta=meta(owner, "done")
                )
            )
        return created, changed, conflicts

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))

    created = [w for c, _, _ in results for w in c]
    changed = [w for _, ch, _ in results for w in ch]
    shared_ok = sum(1 for w in changed if w.id == shared)
    conflicts = sum(k for _, _, k in results)
    assert shared_ok + conflicts == THREADS * SHARED_WRITES_EACH

    assert side.tasks.get_owned(shared, owner).version == 1 + shared_ok
    for n, (mine, _, _) in enumerate(results):
        for i, w in enumerate(mine):
            task = side.tasks.get_owned(w.id, owner)
            assert (task.title, task.description, task.labels) == (
                f"task {n}.{i}",
                f"by worker {n}",
                (f"w{n}", f"i{i}"),
            )
            assert task.priority == (Priority.HIGH if i % 2 else Priority.LOW)
            assert task.version == (2 if i < 3 else 1)
            assert task.status == ("done" if i < 3 else "todo")
    assert_positions_are_their_own(side, created + changed)
    side.close()


def test_one_email_is_registered_once_among_concurrent_registrations(
    tmp_path: Path, event_store_url: str
) -> None:
    side = write_side(tmp_path, event_store_url)
    contested = f"same-{uuid4().hex[:8]}@example.com"

    def register(n: int) -> UUID | None:
        email = contested if n % 2 else f"user-{n}-{uuid4().hex[:8]}@example.com"
        try:
            return side.identity.register(
                email=email, display_name=f"u{n}", password_hash="x", meta=meta(None, f"r{n}")
            ).id
        except EmailTaken:
            return None

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(register, range(4 * THREADS)))

    winners = [user for n, user in enumerate(outcomes) if n % 2 and user is not None]
    assert len(winners) == 1
    found = side.identity.find_by_email(contested)
    assert found is not None
    assert found.id == winners[0]
    for n, user in enumerate(outcomes):
        if n % 2 == 0:
            assert user is not None
            assert side.identity.get_user(user).display_name == f"u{n}"
    side.close()
