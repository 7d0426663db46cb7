"""The runner's promise, as a property: crashes, restarts, rewinds and duplicated batches
anywhere give exactly the read model of one clean pass, with no event skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import pymongo.errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.identity import Identity
from commands.tasks import Tasks
from domain.errors import TaskNotFound
from domain.meta import SYSTEM
from projections.checkpoints import InMemoryCheckpointStore
from projections.envelope import Envelope, Projector
from projections.log import EventsourcingLog
from projections.parked import InMemoryParkedEvents
from projections.runner import Pacing, ProjectionRunner
from tests.fixtures.projections import Crash, MemoryProjector

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}

Command = tuple[str, int, int]
commands = st.lists(
    st.tuples(
        st.sampled_from(["register", "create", "edit", "status", "delete"]),
        st.integers(0, 9),
        st.integers(0, 2),
    ),
    max_size=40,
)
chaos = st.lists(
    st.sampled_from(["ok", "ok", "crash_before", "crash_after", "duplicate"]), max_size=25
)


@dataclass
class History:
    identity: Identity
    tasks: Tasks

    def logs(self) -> dict[str, EventsourcingLog]:
        return {"Identity": EventsourcingLog(self.identity), "Tasks": EventsourcingLog(self.tasks)}


def record(history: Sequence[Command]) -> History:
    """Play random commands on the real write side (in memory); refused ones are skipped."""
    identity, tasks = Identity(env=POPO), Tasks(env=POPO)
    users: list[UUID] = []
    created: list[UUID] = []
    for kind, pick, value in history:
        if kind == "register" or not users:
            users.append(
                identity.register(
                    email=f"u{len(users)}@example.com",
                    display_name="u",
                    password_hash="x",
                    meta=SYSTEM,
                ).id
            )
        if kind == "create" or not created:
            owner = users[pick % len(users)]
            created.append(tasks.create_task(owner_id=owner, title=f"t{pick}", meta=SYSTEM).id)
            continue
        task_id = created[pick % len(created)]
        owner = tasks.repository.get(task_id).owner_id
        changes = {
            "edit": {"title": f"t{pick}-{value}"},
            "status": {"status": ["todo", "in_progress", "done"][value]},
        }
        try:
            if kind == "delete":
                tasks.delete_task(task_id, actor=owner, meta=SYSTEM)
            elif kind in changes:
                tasks.update_task(task_id, actor=owner, changes=changes[kind], meta=SYSTEM)
        except TaskNotFound:
            continue
    return History(identity, tasks)


@dataclass
class Chaotic:
    """A projector whose process dies, or whose batch is delivered twice, on schedule."""

    inner: MemoryProjector
    schedule: Iterator[str]
    name: str = "memory"
    version: int = 1
    upstreams: Sequence[str] = ("Identity", "Tasks")
    topics: Sequence[str] = ()

    async def start(self) -> None:
        return None

    async def apply(self, batch: Sequence[Envelope]) -> None:
        action = next(self.schedule, "ok")
        if action == "crash_before":
            raise Crash
        await self.inner.apply(batch)
        if action == "duplicate":
            await self.inner.apply(batch)
        if action == "crash_after":  # written, checkpoint not moved: the batch comes again
            raise Crash


@dataclass
class OneProjector:
    projector_: Projector
    name: str = "memory"
    upstreams: Sequence[str] = ("Identity", "Tasks")
    topics: Sequence[str] = ()
    dropped: list[int] = field(default_factory=list)

    def projector(self, generation: int) -> Projector:
        return self.projector_

    async def drop(self, generation: int) -> None:
        self.dropped.append(generation)


async def clean_pass(history: History) -> dict[str, list[int]]:
    state: dict[str, list[int]] = {}
    runner = ProjectionRunner(
        OneProjector(MemoryProjector(state)),
        1,
        history.logs(),
        InMemoryCheckpointStore(),
        InMemoryParkedEvents(),
    )
    await runner.catch_up()
    return state


async def chaotic_pass(
    history: History, actions: list[str], sizes: list[int], rewinds: list[int]
) -> tuple[dict[str, list[int]], int]:
    state: dict[str, list[int]] = {}
    schedule = iter(actions)
    checkpoints = InMemoryCheckpointStore()
    parked = InMemoryParkedEvents()
    logs = history.logs()
    restarts = 0
    while True:
        projection = OneProjector(Chaotic(MemoryProjector(state), schedule))
        runner = ProjectionRunner(
            projection,
            1,
            logs,
            checkpoints,
            parked,
            pacing=Pacing(batch_size=sizes[restarts % len(sizes)]),
        )
        try:
            await runner.catch_up()
            return state, await parked.count("memory")
        except Crash:
            restarts += 1
        # A restart may also find an older checkpoint (say, restored from a backup): replay.
        if rewinds and restarts % 2 == 0:
            back = rewinds[restarts % len(rewinds)]
            for upstream, position in (await checkpoints.positions("memory", 1)).items():
                await checkpoints.reset("memory", 1)
                await checkpoints.advance("memory", 1, upstream, max(0, position - back))


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    commands,
    chaos,
    st.lists(st.integers(1, 6), min_size=1, max_size=4),
    st.lists(st.integers(0, 10), max_size=3),
)
def test_crashes_restarts_and_duplicates_give_the_clean_pass(
    history: list[Command], actions: list[str], sizes: list[int], rewinds: list[int]
) -> None:
    recorded = record(history)
    clean = asyncio.run(clean_pass(recorded))
    chaotic, parked = asyncio.run(chaotic_pass(recorded, actions, sizes, rewinds))
    assert chaotic == clean
    assert parked == 0
    # And the clean pass itself skipped nothing: every aggregate's versions are 1..n.
    assert all(versions == list(range(1, len(versions) + 1)) for versions in clean.values())
    assert sum(len(v) for v in clean.values()) == sum(
        len(log.read(0, 10_000, (), log.head()).items) for log in recorded.logs().values()
    )


@dataclass
class Flaky:
    """A projector whose database is unreachable for the first few calls."""

    inner: MemoryProjector
    failures: int
    calls: int = 0
    name: str = "memory"
    version: int = 1
    upstreams: Sequence[str] = ("Identity", "Tasks")
    topics: Sequence[str] = ()

    async def start(self) -> None:
        return None

    async def apply(self, batch: Sequence[Envelope]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise pymongo.errors.AutoReconnect("primary stepped down")
        await self.inner.apply(batch)


async def test_an_unreachable_read_model_is_retried_never_parked() -> None:
    recorded = record([("create", i, 0) for i in range(5)])
    state: dict[str, list[int]] = {}
    flaky = Flaky(MemoryProjector(state), failures=4)
    parked = InMemoryParkedEvents()
    runner = ProjectionRunner(
        OneProjector(flaky),
        1,
        recorded.logs(),
        InMemoryCheckpointStore(),
        parked,
        pacing=Pacing(retry_min=0.001, retry_max=0.01),
    )
    await runner.catch_up()
    assert await parked.count("memory") == 0
    assert flaky.calls > 4
    assert state == await clean_pass(recorded)
