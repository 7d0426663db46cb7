"""Rebuild throughput: every registered projection rebuilt from 1,000,000 generated events.

    python -m ops.bench.rebuild [--events 1000000] [--store postgres|sqlite] [--batch 1000]

Printed beside two baselines measured in the same run over the same logs: reading the
notification logs alone, as the runner's reader does (select + decode), and the bare select.
The rebuild is the real path (``Rebuild.blue_green`` per projection, all at once, as
``taskledger projections rebuild --all``), timed from its start until the last alias switch.
Memory: peak RSS of the process after each phase, and the RSS sampled during the rebuild.

Engines: a scratch PostgreSQL database on TASKLEDGER_BENCH_PG_URL's server (default
postgresql://postgres@127.0.0.1:5432/postgres), dropped afterwards, or SQLite in a temporary
directory; a SecantusDB daemon of its own (or TASKLEDGER_BENCH_MONGO_URL); Redis at
TASKLEDGER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0) under a prefix of its own,
removed afterwards. With no projection registered, a minimal MongoDB one is rebuilt instead.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import redis
import typer
from prometheus_client import REGISTRY
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from domain.identity import EmailIndex, User
from domain.meta import meta
from domain.tasks import Status, Task
from ops.bench.commands import scratch_database
from ops.bootstrap import build_write_side, event_store_env
from ops.engines import free_port, mongo_url_for, secantus
from ops.projections import UPSTREAMS, ReadSide, open_read_side
from ops.schema import migrate
from ops.settings import Settings
from projections.envelope import Envelope, Projection, collection_name
from projections.log import EventsourcingLog
from projections.rebuild import Phase
from projections.runner import Progress

LOOPBACK = "127.0.0.1"
TASKS_PER_SAVE = 500
USERS_PER_SAVE = 500


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------------------- engines


@contextmanager
def event_store(kind: str, scratch: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{scratch / 'events.sqlite'}"
        return
    admin = os.environ.get(
        "TASKLEDGER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    with scratch_database(admin) as url:
        yield url


@contextmanager
def document_store(scratch: Path) -> Iterator[str]:
    configured = os.environ.get("TASKLEDGER_BENCH_MONGO_URL")
    if configured:
        yield configured
        return
    port = free_port()
    daemon = secantus(scratch / "secantus", port, log_dir=scratch)
    daemon.start()
    try:
        yield mongo_url_for(LOOPBACK, port, f"bench_{uuid.uuid4().hex[:8]}")
    finally:
        daemon.stop()


@contextmanager
def redis_prefix(url: str) -> Iterator[str]:
    prefix = f"tlbench:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(url)
    for keys in _chunks(list(client.scan_iter(match=prefix + "*", count=1000)), 1000):
        client.delete(*keys)
    client.close()


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------- generation


def generate(settings: Settings, events: int) -> tuple[int, float]:
    """About ``events`` events: 1% registrations, then tasks created, edited, moved, deleted.

    Many aggregates per save: one transaction per few hundred tasks, as the store likes it.
    """
    write = build_write_side(settings)
    started = time.perf_counter()
    written = 0
    try:
        who = meta(None, "bench")
        users: list[User] = []
        for start in range(0, max(1, events // 200), USERS_PER_SAVE):
            batch: list[User | EmailIndex] = []
            for i in range(start, min(start + USERS_PER_SAVE, max(1, events // 200))):
                email = f"user{i}@bench.example"
                user = User(
                    email=email,
                    display_name=f"User {i}",
                    password_hash="-",  # noqa: S106 - nobody logs in to a benchmark account
                    meta=who,
                )
                users.append(user)
                batch += [user, EmailIndex(email=email, user_id=user.id)]
            write.identity.save(*batch)
            written += len(batch)
        i = 0
        while written < events:
            tasks: list[Task] = []
            for _ in range(TASKS_PER_SAVE):
                owner = users[i % len(users)]
                task = Task.create(
                    owner_id=owner.id,
                    title=f"task {i}",
                    labels=["bench"],
                    due_date=datetime(2027, 1, 1, tzinfo=UTC) + timedelta(hours=i % 999),
                    meta=meta(owner.id, "bench"),
                )
                task.edit({"title": f"task {i} (edited)", "priority": "high"}, who)
                task.change_status(Status.DONE if i % 2 else Status.IN_PROGRESS, who)
                if i % 10 == 0:
                    task.delete(who)
                written += len(task.pending_events)
                tasks.append(task)
                i += 1
                if written >= events:
                    break
            write.tasks.save(*tasks)
    finally:
        write.close()
    return written, time.perf_counter() - started


# ------------------------------------------------------------------------------ baselines


def read_logs(
    logs: Sequence[EventsourcingLog], batch: int, *, decode: bool
) -> dict[str, tuple[int, float]]:
    """Every notification of each log in ``batch``-sized selects (decoded if asked), timed."""
    timed: dict[str, tuple[int, float]] = {}
    for log in logs:
        started = time.perf_counter()
        count = position = 0
        while True:
            found = log.app.recorder.select_notifications(position, batch, inclusive_of_start=False)
            if not found:
                break
            if decode:
                for notification in found:
                    log.envelope(notification)
            count += len(found)
            position = found[-1].id
        timed[log.name] = (count, time.perf_counter() - started)
    return timed


# ------------------------------------------------------------------------------- rebuild


@dataclass
class MinimalProjector:
    """One Mongo upsert per task event, guarded by version: the least a read model does."""

    db: AsyncDatabase[dict[str, Any]]
    generation: int
    name: str = "bench_minimal"
    version: int = 1
    upstreams: Sequence[str] = ("Tasks",)
    topics: Sequence[str] = ()

    async def start(self) -> None:
        return None

    async def apply(self, batch: Sequence[Envelope]) -> None:
        ops = [
            UpdateOne(
                {"_id": str(e.originator_id), "version": {"$lt": e.originator_version}},
                {"$set": {"version": e.originator_version, "type": e.event_type}},
                upsert=True,
            )
            for e in batch
        ]
        try:
            await self.db[collection_name(self.name, self.generation, "tasks")].bulk_write(
                ops, ordered=False
            )
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise


@dataclass
class MinimalProjection:
    db: AsyncDatabase[dict[str, Any]]
    name: str = "bench_minimal"
    upstreams: Sequence[str] = ("Tasks",)
    topics: Sequence[str] = ()

    def projector(self, generation: int) -> MinimalProjector:
        return MinimalProjector(self.db, generation)

    async def drop(self, generation: int) -> None:
        await self.db.drop_collection(collection_name(self.name, generation, "tasks"))


@dataclass
class NoopProjector:
    """Applies nothing: what is left is the engine (read, decode, hand over, checkpoint)."""

    name: str = "engine_only"
    version: int = 1
    upstreams: Sequence[str] = tuple(UPSTREAMS)
    topics: Sequence[str] = ()

    async def start(self) -> None:
        return None

    async def apply(self, batch: Sequence[Envelope]) -> None:
        return None


@dataclass
class NoopProjection:
    name: str = "engine_only"
    upstreams: Sequence[str] = tuple(UPSTREAMS)
    topics: Sequence[str] = ()

    def projector(self, generation: int) -> NoopProjector:
        return NoopProjector()

    async def drop(self, generation: int) -> None:
        return None


async def upsert_ceiling(settings: Settings, count: int = 5000) -> float:
    """Guarded upserts per second the document store takes, 1000 per bulk_write."""
    async with open_read_side(settings) as side:
        collection = side.clients.db[f"bench_ceiling_{uuid.uuid4().hex[:6]}"]
        started = time.perf_counter()
        for _ in range(0, count, 1000):
            await collection.bulk_write(
                [
                    UpdateOne(
                        {"_id": uuid.uuid4().hex, "version": {"$lt": 1}},
                        {"$set": {"version": 1}},
                        upsert=True,
                    )
                    for _ in range(1000)
                ],
                ordered=False,
            )
        took = time.perf_counter() - started
        await collection.drop()
        return count / took


@dataclass
class Timing:
    started: float = field(default_factory=time.perf_counter)
    switched: dict[str, float] = field(default_factory=dict)
    positions: dict[tuple[str, str], int] = field(default_factory=dict)
    rss: list[float] = field(default_factory=list)

    def on_phase(self, phase: Phase) -> None:
        if phase.step == "switched":
            self.switched[phase.projection] = time.perf_counter() - self.started

    def on_progress(self, progress: Progress) -> None:
        self.positions[(progress.projection, progress.upstream)] = progress.position


def applied(projection: str) -> float:
    value = REGISTRY.get_sample_value(
        "taskledger_projection_events_applied_total", {"projection": projection}
    )
    return value or 0.0


async def _sample(timing: Timing, every: float = 0.5) -> None:
    while True:
        timing.rss.append(rss_mib())
        await asyncio.sleep(every)


@dataclass(frozen=True, slots=True)
class Rebuilt:
    name: str
    upstreams: Sequence[str]
    seconds: float
    delivered: int  # events handed to the projector (its topics only)


async def rebuild_all(settings: Settings, only: Sequence[str]) -> tuple[list[Rebuilt], Timing]:
    async with open_read_side(settings) as side:
        projections = _chosen(side, only)
        before = {p.name: applied(p.name) for p in projections}
        timing = Timing()
        rebuild = side.rebuild(on_progress=timing.on_progress, on_phase=timing.on_phase)
        sampler = asyncio.create_task(_sample(timing))
        reporter = asyncio.create_task(_report_progress(timing))
        try:
            async with asyncio.TaskGroup() as group:
                for projection in projections:
                    group.create_task(rebuild.blue_green(projection))
        finally:
            sampler.cancel()
            reporter.cancel()
        return [
            Rebuilt(
                p.name,
                list(p.upstreams),
                timing.switched[p.name],
                int(applied(p.name) - before[p.name]),
            )
            for p in projections
        ], timing


def _chosen(side: ReadSide, only: Sequence[str]) -> list[Projection]:
    extra: dict[str, Projection] = {
        "engine_only": NoopProjection(),
        "bench_minimal": MinimalProjection(side.clients.db),
    }
    registered = side.projections()
    if only:
        return [p for p in [*registered, *extra.values()] if p.name in only]
    return registered or [extra["bench_minimal"]]


async def _report_progress(timing: Timing) -> None:
    while True:
        await asyncio.sleep(10)
        done = ", ".join(f"{p}/{u} {pos:,}" for (p, u), pos in sorted(timing.positions.items()))
        print(f"  … {time.perf_counter() - timing.started:5.0f}s  {done}", flush=True)


# --------------------------------------------------------------------------------- main


def main(
    events: Annotated[int, typer.Option(min=1000, help="Events to generate.")] = 1_000_000,
    store: Annotated[Literal["postgres", "sqlite"], typer.Option(help="Event store.")] = "postgres",
    batch: Annotated[int, typer.Option(min=1, help="Events per read and per apply.")] = 1000,
    projection: Annotated[
        list[str] | None,
        typer.Option(
            help="Rebuild only these (default: all registered); engine_only and bench_minimal "
            "are this benchmark's own."
        ),
    ] = None,
) -> None:
    redis_url = os.environ.get("TASKLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    # SIGTERM unwinds like Ctrl-C, so the scratch database, daemon and keys are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tl-bench-")))
        event_store_url = stack.enter_context(event_store(store, scratch))
        mongo_url = stack.enter_context(document_store(scratch))
        prefix = stack.enter_context(redis_prefix(redis_url))
        settings = Settings.model_validate(
            {
                "data_dir": scratch,
                "event_store_url": event_store_url,
                "mongo_url": mongo_url,
                "redis_url": redis_url,
                "redis_prefix": prefix,
                "projection_batch_size": batch,
                "projection_rebuild_grace": 2,
                "jwt_secret": "bench-secret-of-32-bytes-at-least",
            }
        )
        migrate(settings)  # as every deployment does before anything writes
        print(f"event store {store}, document store {mongo_url.split('?')[0]}, batch {batch}")

        written, seconds = generate(settings, events)
        print(
            f"generated  {written:>10,} events in {seconds:6.1f}s {written / seconds:>9,.0f} ev/s"
            f"   peak RSS {peak_rss_mib():5.0f} MiB"
        )

        logs = [EventsourcingLog.open(name, event_store_env(settings)) for name in UPSTREAMS]
        try:
            read_logs(logs, batch, decode=False)  # warm the caches: every pass after finds them so
            selected = read_logs(logs, batch, decode=False)
            raw = read_logs(logs, batch, decode=True)
        finally:
            for log in logs:
                log.close()
        for name, (count, took) in raw.items():
            print(
                f"raw read   {count:>10,} events in {took:6.1f}s {count / took:>9,.0f} ev/s"
                f"   {name} log, select + decode (bare select: "
                f"{selected[name][0] / selected[name][1]:,.0f} ev/s)"
            )
        print(f"           peak RSS {peak_rss_mib():5.0f} MiB")

        ceiling = asyncio.run(upsert_ceiling(settings))
        print(
            f"doc store  {ceiling:>10,.0f} guarded upserts/s (bulk_write of 1000: the ceiling of "
            f"any MongoDB read model here)"
        )

        rss_before = rss_mib()
        engine, timing = asyncio.run(rebuild_all(settings, ["engine_only"]))
        report("engine", engine, raw)
        samples = list(timing.rss)
        if projection != ["engine_only"]:
            started = time.perf_counter()
            results, timing = asyncio.run(rebuild_all(settings, projection or []))
            print(
                f"rebuild    {len(results)} projection(s) at once, each timed to its alias "
                f"switch (run: {time.perf_counter() - started:.1f}s with the grace period)"
            )
            report("rebuild", results, raw)
            samples += timing.rss
        print(
            f"memory     RSS before the rebuilds {rss_before:5.0f} MiB, during them min "
            f"{min(samples):5.0f} max {max(samples):5.0f} MiB; "
            f"peak RSS of the run {peak_rss_mib():5.0f} MiB"
        )


def report(title: str, results: Sequence[Rebuilt], raw: dict[str, tuple[int, float]]) -> None:
    for done in results:
        count = sum(raw[u][0] for u in done.upstreams)
        baseline = sum(raw[u][1] for u in done.upstreams)
        print(
            f"{title:<10} {done.name:<13} {count:>10,} log events in {done.seconds:6.1f}s "
            f"{count / done.seconds:>9,.0f} ev/s  {baseline / done.seconds:5.2f}x raw read"
            f"  ({done.delivered:,} delivered: {done.delivered / done.seconds:,.0f}/s)"
        )
    if len(results) > 1:
        wall = max(r.seconds for r in results)
        total = sum(raw[name][0] for name in raw)
        print(
            f"{'':<10} {'together':<13} {total:>10,} log events in {wall:6.1f}s "
            f"{total / wall:>9,.0f} ev/s of log, "
            f"{sum(r.delivered for r in results) / wall:,.0f} deliveries/s"
        )


if __name__ == "__main__":
    typer.run(main)
