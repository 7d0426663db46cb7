"""Read-side figures: ``GET /v1/tasks`` latency, its growth with a user's task count, and the
projection lag from a command's answer to its visibility in the read model.

Every figure is printed beside a baseline measured in the same run:

- ``GET /v1/tasks`` p50/p99 under N concurrent clients (each its own user with 20 tasks), from
  the page cache and with the cache bypassed (MongoDB), beside a trivial FastAPI GET endpoint
  under the same uvicorn setup;
- p99 at 100 and at 100,000 tasks for one user, cache bypassed and from the cache;
- projection lag p50/p99 at half the measured maximum command rate, beside the command
  latency itself.

    python -m ops.bench.queries [--clients 8] [--seconds 10] [--big 100000]

Engines: the embedded ones (SQLite event store, a SecantusDB daemon of its own) and the Redis
at TASKLEDGER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0) under a prefix of its own.
The API and the projector run as their own processes (``taskledger serve api|projector``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from fastapi import FastAPI
from pymongo import MongoClient

from commands.tasks import Tasks
from domain.meta import SYSTEM
from domain.tasks import Task
from ops.bench.commands import _forget
from ops.bench.load import HttpConnection, Operation, Result, closed_loop
from ops.bootstrap import event_store_env
from ops.cli.serve import serve_http
from ops.embedded import http_ok
from ops.engines import Daemon, free_port, mongo_url_for, secantus
from ops.logs import configure_logging
from ops.schema import migrate
from ops.settings import Settings

LOOPBACK = "127.0.0.1"
TASKS_PER_CLIENT = 20
SAMPLE_PAGE: dict[str, Any] = {
    "items": [
        {
            "id": str(uuid.UUID(int=n)),
            "title": f"task {n}",
            "description": "",
            "status": "todo",
            "priority": "medium",
            "due_date": None,
            "labels": [],
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "version": 1,
        }
        for n in range(TASKS_PER_CLIENT)
    ],
    "next_cursor": None,
}


def baseline_app() -> FastAPI:
    app = FastAPI(title="trivial read baseline")

    @app.get("/v1/tasks")
    async def tasks() -> dict[str, Any]:
        """A constant page of the same size: the cost of FastAPI and uvicorn alone."""
        return SAMPLE_PAGE

    return app


@contextmanager
def process(
    name: str, argv: list[str], probe_url: str, env: dict[str, str], logs: Path
) -> Iterator[None]:
    daemon = Daemon(
        name, [sys.executable, "-m", *argv], http_ok(probe_url), logs / f"{name}.log", env=env
    )
    daemon.start(timeout=60)
    try:
        yield
    finally:
        daemon.stop()


async def sign_up(port: int, count: int) -> list[tuple[UUID, str]]:
    connection = await HttpConnection.open(LOOPBACK, port)
    users: list[tuple[UUID, str]] = []
    try:
        for n in range(count):
            account = {
                "email": f"reader-{n}-{uuid.uuid4().hex[:6]}@example.com",
                "password": "benchmark password",
            }
            status, body = await connection.request("POST", "/v1/auth/register", account)
            if status != 201:
                raise RuntimeError(f"register answered {status}: {body[:200]!r}")
            user = UUID(json.loads(body)["id"])
            status, body = await connection.request("POST", "/v1/auth/login", account)
            if status != 200:
                raise RuntimeError(f"login answered {status}: {body[:200]!r}")
            users.append((user, str(json.loads(body)["access_token"])))
    finally:
        await connection.close()
    return users


def seed_tasks(settings: Settings, owner: UUID, count: int) -> None:
    """Tasks written straight into the event store, many per transaction (the fast path)."""
    tasks = Tasks(env=event_store_env(settings))
    try:
        base = datetime.now(UTC)
        for start in range(0, count, 1000):
            batch = [
                Task.create(
                    owner_id=owner,
                    title=f"seeded {n}",
                    description="bulk",
                    due_date=base + timedelta(hours=n % 500),
                    meta=SYSTEM,
                )
                for n in range(start, min(count, start + 1000))
            ]
            tasks.save(*batch)
    finally:
        tasks.close()


def task_head(settings: Settings) -> int:
    tasks = Tasks(env=event_store_env(settings))
    try:
        return int(tasks.recorder.max_notification_id() or 0)
    finally:
        tasks.close()


def checkpoint(mongo: MongoClient[dict[str, Any]], projection: str = "task_list") -> int:
    db = mongo.get_default_database()
    alias = db["projection_aliases"].find_one({"_id": projection})
    generation = 1 if alias is None else int(alias["generation"])
    doc = db["projection_checkpoints"].find_one({"_id": f"{projection}:{generation}:Tasks"})
    return 0 if doc is None else int(doc["position"])


def wait_projected(
    settings: Settings, mongo: MongoClient[dict[str, Any]], within: float = 1800
) -> float:
    head, began = task_head(settings), time.monotonic()
    while min(checkpoint(mongo), checkpoint(mongo, "task_stats")) < head:
        if time.monotonic() - began > within:
            raise RuntimeError(f"projector did not reach {head} within {within:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - began


def _get(connection: HttpConnection, token: str | None, *, bypass: bool) -> Operation:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    counter = iter(range(10**12))

    async def get() -> str | None:
        path = "/v1/tasks"
        if bypass:
            # A distinct (always true) filter per request: a new cache key, so MongoDB answers.
            moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=next(counter))
            path += "?due_after=" + moment.isoformat().replace("+00:00", "Z")
        status, body = await connection.request("GET", path, None, headers)
        return None if status == 200 else f"{status} {body[:200]!r}"

    return get


async def measure_gets(
    name: str, port: int, tokens: list[str | None], *, bypass: bool, warmup: float, seconds: float
) -> Result:
    connections = [await HttpConnection.open(LOOPBACK, port) for _ in tokens]
    try:
        return await closed_loop(
            name,
            [_get(c, t, bypass=bypass) for c, t in zip(connections, tokens, strict=True)],
            warmup=warmup,
            seconds=seconds,
        )
    finally:
        for c in connections:
            await c.close()


async def sequential_gets(name: str, port: int, token: str, *, bypass: bool, count: int) -> Result:
    connection = await HttpConnection.open(LOOPBACK, port)
    result = Result(name, 1.0)
    try:
        get = _get(connection, token, bypass=bypass)
        await get()  # warm: connection, alias cache, and (when not bypassed) the page cache
        for _ in range(count):
            began = time.perf_counter()
            error = await get()
            if error is None:
                result.latencies.append(time.perf_counter() - began)
            else:
                result.errors += 1
                result.first_error = result.first_error or error
    finally:
        await connection.close()
    return result


async def create_tasks(port: int, users: list[tuple[UUID, str]], per_user: int) -> None:
    async def one(token: str) -> None:
        connection = await HttpConnection.open(LOOPBACK, port)
        try:
            for n in range(per_user):
                status, body = await connection.request(
                    "POST",
                    "/v1/tasks",
                    {"title": f"task {n}"},
                    {"Authorization": f"Bearer {token}"},
                )
                if status != 201:
                    raise RuntimeError(f"create answered {status}: {body[:200]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(one(token) for _, token in users))


async def max_command_rate(
    port: int, tokens: list[str], *, warmup: float, seconds: float
) -> Result:
    connections = [await HttpConnection.open(LOOPBACK, port) for _ in tokens]

    def post(connection: HttpConnection, token: str) -> Operation:
        async def run() -> str | None:
            status, body = await connection.request(
                "POST", "/v1/tasks", {"title": "rate"}, {"Authorization": f"Bearer {token}"}
            )
            return None if status == 201 else f"{status} {body[:200]!r}"

        return run

    try:
        return await closed_loop(
            "POST /v1/tasks (closed loop, max rate)",
            [post(c, t) for c, t in zip(connections, tokens, strict=True)],
            warmup=warmup,
            seconds=seconds,
        )
    finally:
        for c in connections:
            await c.close()


async def projection_lag(
    port: int, tokens: list[str], mongo_url: str, rate: float, seconds: float
) -> tuple[Result, Result, float]:
    """Open loop at ``rate`` commands/s; a watcher samples the task_list checkpoint every ms.

    Returns the command latencies, the lags (answer -> checkpoint past the command's
    position), and the sampling interval actually achieved."""
    from pymongo import AsyncMongoClient

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = mongo.get_default_database()
    alias = await db["projection_aliases"].find_one({"_id": "task_list"})
    key = f"task_list:{1 if alias is None else int(alias['generation'])}:Tasks"
    samples: list[tuple[float, int]] = []
    answered: list[tuple[float, int]] = []
    commands = Result("POST /v1/tasks at half the max rate (command latency)", seconds)
    until: list[int] = []  # set once every command answered: the position to watch up to

    async def watch() -> None:
        while True:
            doc = await db["projection_checkpoints"].find_one({"_id": key}, {"position": 1})
            position = 0 if doc is None else int(doc["position"])
            samples.append((time.perf_counter(), position))
            if until and position >= until[0]:
                return
            await asyncio.sleep(0.001)

    connections = [await HttpConnection.open(LOOPBACK, port) for _ in tokens]
    free: asyncio.Queue[tuple[HttpConnection, str]] = asyncio.Queue()
    for pair in zip(connections, tokens, strict=True):
        free.put_nowait(pair)

    async def command() -> None:
        connection, token = await free.get()
        try:
            began = time.perf_counter()
            status, body = await connection.request(
                "POST", "/v1/tasks", {"title": "lag"}, {"Authorization": f"Bearer {token}"}
            )
            done = time.perf_counter()
            if status != 201:
                commands.errors += 1
                commands.first_error = commands.first_error or f"{status} {body[:200]!r}"
                return
            commands.latencies.append(done - began)
            answered.append((done, int(json.loads(body)["position"])))
        finally:
            free.put_nowait((connection, token))

    watcher = asyncio.create_task(watch())
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent: list[asyncio.Task[None]] = []
    n = 0
    while loop.time() - start < seconds:
        target = start + n / rate
        await asyncio.sleep(max(0.0, target - loop.time()))
        sent.append(asyncio.create_task(command()))
        n += 1
    await asyncio.gather(*sent)
    until.append(max((p for _, p in answered), default=0))
    await watcher
    for c in connections:
        await c.close()
    await mongo.close()
    lags = Result("projection lag: command answered -> in the read model", seconds)
    for answered_at, position in answered:
        visible = next(t for t, p in samples if p >= position)
        lags.latencies.append(max(0.0, visible - answered_at))
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]
    return commands, lags, sorted(gaps)[len(gaps) // 2] if gaps else float("nan")


def row(result: Result) -> str:
    return (
        f"{result.name:58} {len(result.latencies):7d} {result.percentile(50) * 1000:9.2f} "
        f"{result.percentile(99) * 1000:9.2f} {result.errors:6d}"
    )


HEADER = f"{'':58} {'n':>7} {'p50 ms':>9} {'p99 ms':>9} {'errors':>6}"


def main(
    clients: Annotated[int, typer.Option(min=1, help="Concurrent clients.")] = 8,
    seconds: Annotated[float, typer.Option(min=1, help="Measured seconds per phase.")] = 10,
    warmup: Annotated[float, typer.Option(min=0, help="Unmeasured seconds first.")] = 2,
    big: Annotated[int, typer.Option(min=100, help="Tasks of the one big user.")] = 100_000,
    samples: Annotated[int, typer.Option(min=5, help="Sequential GETs per size.")] = 50,
    serve_baseline: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Measure the read side beside its baselines; print the tables."""
    if serve_baseline is not None:
        configure_logging("WARNING", json_lines=True)
        serve_http(baseline_app(), LOOPBACK, serve_baseline, "WARNING")
        return
    redis_url = os.environ.get("TASKLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"tlbench:{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory(prefix="tl-bench-reads-") as tmp:
        work = Path(tmp)
        mongo_port = free_port()
        mongo_url = mongo_url_for(LOOPBACK, mongo_port, "bench")
        store = secantus(work / "mongo", mongo_port, log_dir=work)
        store.start()
        settings = Settings(
            data_dir=work,
            event_store_url=f"sqlite:///{work / 'events.sqlite'}",
            mongo_url=mongo_url,
            redis_url=redis_url,
            redis_prefix=prefix,
        )
        migrate(settings)  # serving processes never create the schema
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")} | {
            "TASKLEDGER_DATA_DIR": str(work),
            "TASKLEDGER_EVENT_STORE_URL": str(settings.event_store_url),
            "TASKLEDGER_REDIS_URL": redis_url,
            "TASKLEDGER_REDIS_PREFIX": prefix,
            "TASKLEDGER_MONGO_URL": mongo_url,
            "TASKLEDGER_LOG_LEVEL": "WARNING",
            "TASKLEDGER_JWT_SECRET": "bench-secret-of-32-bytes-at-least-" + prefix,
            # Every client registers from the loopback address; the limit is not measured.
            "TASKLEDGER_REGISTER_MAX_PER_CLIENT": "1000000000",
        }
        mongo: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
        port, metrics, base = free_port(), free_port(), free_port()
        try:
            with (
                process(
                    "projector",
                    ["ops", "serve", "projector", "--metrics-port", str(metrics)],
                    f"http://{LOOPBACK}:{metrics}/metrics",
                    env,
                    work,
                ),
                process(
                    "api",
                    ["ops", "serve", "api", "--port", str(port)],
                    f"http://{LOOPBACK}:{port}/health/live",
                    env,
                    work,
                ),
                process(
                    "baseline",
                    ["ops.bench.queries", "--serve-baseline", str(base)],
                    f"http://{LOOPBACK}:{base}/docs",
                    env,
                    work,
                ),
            ):
                users = asyncio.run(sign_up(port, clients + 1))
                readers, giant = users[:clients], users[clients]
                asyncio.run(create_tasks(port, readers, TASKS_PER_CLIENT))
                wait_projected(settings, mongo)
                tokens: list[str | None] = [t for _, t in readers]
                concurrent = [
                    asyncio.run(
                        measure_gets(
                            "GET /v1/tasks (page cache)",
                            port,
                            tokens,
                            bypass=False,
                            warmup=warmup,
                            seconds=seconds,
                        )
                    ),
                    asyncio.run(
                        measure_gets(
                            "GET /v1/tasks (cache bypassed: MongoDB)",
                            port,
                            tokens,
                            bypass=True,
                            warmup=warmup,
                            seconds=seconds,
                        )
                    ),
                    asyncio.run(
                        measure_gets(
                            "trivial FastAPI GET endpoint",
                            base,
                            [None] * clients,
                            bypass=False,
                            warmup=warmup,
                            seconds=seconds,
                        )
                    ),
                ]
                sizes: list[Result] = []
                seeded = 0
                for size in (100, big):
                    seed_tasks(settings, giant[0], size - seeded)
                    seeded = size
                    took = wait_projected(settings, mongo)
                    print(f"projected the big user's tasks up to {size}: {took:.1f}s")
                    for bypass in (True, False):
                        label = "MongoDB" if bypass else "page cache"
                        sizes.append(
                            asyncio.run(
                                sequential_gets(
                                    f"GET /v1/tasks, {size} tasks, {label}",
                                    port,
                                    giant[1],
                                    bypass=bypass,
                                    count=samples if size <= 1000 else max(5, samples // 10),
                                )
                            )
                        )
                writers = [t for _, t in readers]
                peak = asyncio.run(max_command_rate(port, writers, warmup=warmup, seconds=seconds))
                wait_projected(settings, mongo)
                commands, lags, resolution = asyncio.run(
                    projection_lag(port, writers, mongo_url, peak.rate / 2, seconds)
                )
        finally:
            mongo.close()
            store.stop()
            _forget(redis_url, prefix)
        print(
            f"\nGET /v1/tasks under {clients} concurrent clients ({TASKS_PER_CLIENT} tasks "
            f"each, page of 20), {seconds:.0f} s measured after {warmup:.0f} s warm-up"
        )
        print(HEADER + f" {'req/s':>8}")
        for result in concurrent:
            print(row(result) + f" {result.rate:8.0f}")
        cached, bypassed, trivial = concurrent
        print(
            f"cache / trivial p99 = {cached.percentile(99) / trivial.percentile(99):.2f}x, "
            f"MongoDB / trivial p99 = {bypassed.percentile(99) / trivial.percentile(99):.2f}x"
        )
        print(f"\none user, sequential requests: 100 vs {big} tasks")
        print(HEADER)
        for result in sizes:
            print(row(result))
        print(
            f"\nprojection lag at half the max command rate ({peak.rate:.0f}/s max, "
            f"{peak.rate / 2:.0f}/s offered; checkpoint sampled every ~{resolution * 1000:.1f}"
            " ms)"
        )
        print(HEADER)
        for result in (peak, commands, lags):
            print(row(result))


if __name__ == "__main__":
    typer.run(main)
