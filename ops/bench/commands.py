"""Command throughput: ``POST /v1/tasks`` through a real ``taskledger serve api`` on PostgreSQL.

Printed beside two baselines measured in the same run, at the same concurrency:
a trivial FastAPI endpoint under the same uvicorn setup (the ceiling of the HTTP stack), and
raw single-row INSERTs into PostgreSQL from Python (the ceiling of the database, fsync on).

    python -m ops.bench.commands [--clients 16] [--seconds 10] [--warmup 2]

It creates a scratch database (dropped at the end) on TASKLEDGER_BENCH_PG_URL's server,
default postgresql://postgres@127.0.0.1:5432/postgres, and uses Redis at
TASKLEDGER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0) under a prefix of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import psycopg
import redis
import typer
from psycopg.types.json import Jsonb

from ops.bench.load import HttpConnection, Operation, Result, closed_loop
from ops.embedded import http_ok
from ops.engines import Daemon, free_port, mongo_url_for, secantus

LOOPBACK = "127.0.0.1"
BODY = {"title": "Benchmark task", "description": "measured", "labels": ["bench"]}


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
) -> Iterator[str]:
    """A real uvicorn process, ready once GET /health/live or /docs answers 200."""
    url = f"http://{LOOPBACK}:{port}"
    probe = http_ok(url + ("/health/live" if name == "api" else "/docs"))
    daemon = Daemon(
        name, [sys.executable, "-m", *module_args], probe, logs / f"{name}.log", env=env
    )
    daemon.start(timeout=60)
    try:
        yield url
    finally:
        daemon.stop()


async def _connections(port: int, count: int) -> list[HttpConnection]:
    return [await HttpConnection.open(LOOPBACK, port) for _ in range(count)]


def _post_task(connection: HttpConnection, headers: dict[str, str]) -> Operation:
    async def post() -> str | None:
        status, body = await connection.request("POST", "/v1/tasks", BODY, headers)
        return None if status == 201 else f"{status} {body[:200]!r}"

    return post


async def measure_http(
    name: str, port: int, tokens: list[str | None], *, warmup: float, seconds: float
) -> Result:
    connections = await _connections(port, len(tokens))
    operations = [
        _post_task(connection, {"Authorization": f"Bearer {token}"} if token else {})
        for connection, token in zip(connections, tokens, strict=True)
    ]
    try:
        return await closed_loop(name, operations, warmup=warmup, seconds=seconds)
    finally:
        for connection in connections:
            await connection.close()


async def sign_up(port: int, clients: int) -> list[str | None]:
    """One user per client, as many people would be: register, log in, keep the token."""
    connection = await HttpConnection.open(LOOPBACK, port)
    tokens: list[str | None] = []
    try:
        for n in range(clients):
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


async def measure_inserts(url: str, clients: int, *, warmup: float, seconds: float) -> Result:
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
        return await closed_loop(
            "raw INSERT (psycopg, autocommit)",
            [insert(c) for c in connections],
            warmup=warmup,
            seconds=seconds,
        )
    finally:
        for conn in connections:
            await conn.close()


def report(results: list[Result], clients: int, seconds: float, settings: dict[str, str]) -> None:
    print(
        f"\ncommand throughput: {clients} concurrent clients, {seconds:.0f} s measured per "
        f"row after warm-up; PostgreSQL " + ", ".join(f"{k}={v}" for k, v in settings.items())
    )
    print(f"{'':38} {'ops/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for result in results:
        print(
            f"{result.name:38} {result.rate:9.0f} {result.percentile(50) * 1000:9.2f} "
            f"{result.percentile(99) * 1000:9.2f} {result.errors:7d}"
        )
        if result.first_error:
            print(f"    first error: {result.first_error}")
    commands, trivial, inserts = results
    print(f"\ncommands / trivial endpoint = {commands.rate / trivial.rate:.2f}x")
    print(f"commands / raw INSERT       = {commands.rate / inserts.rate:.2f}x")


def main(
    clients: Annotated[int, typer.Option(min=1, help="Concurrent clients.")] = 16,
    seconds: Annotated[float, typer.Option(min=1, help="Measured seconds per row.")] = 10,
    warmup: Annotated[float, typer.Option(min=0, help="Unmeasured seconds first.")] = 2,
) -> None:
    """Measure POST /v1/tasks on PostgreSQL beside its two baselines; print the table."""
    admin_url = os.environ.get(
        "TASKLEDGER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_url = os.environ.get("TASKLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"tlbench:{uuid.uuid4().hex[:8]}:"
    with (
        tempfile.TemporaryDirectory(prefix="tl-bench-") as tmp,
        scratch_database(admin_url) as db_url,
    ):
        work = Path(tmp)
        settings = durability(db_url)
        if settings["fsync"] != "on":
            typer.echo(
                f"fsync is {settings['fsync']} on this server: the figures would lie", err=True
            )
            raise typer.Exit(1)
        mongo_port = free_port()
        mongo = secantus(work / "mongo", mongo_port, log_dir=work)
        mongo.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")} | {
            "TASKLEDGER_DATA_DIR": str(work),
            "TASKLEDGER_EVENT_STORE_URL": db_url,
            "TASKLEDGER_REDIS_URL": redis_url,
            "TASKLEDGER_REDIS_PREFIX": prefix,
            # serve api refuses to start without the secret every replica shares.
            "TASKLEDGER_JWT_SECRET": "bench-secret-of-32-bytes-at-least-" + prefix,
            "TASKLEDGER_MONGO_URL": mongo_url_for(LOOPBACK, mongo_port, "bench"),
            "TASKLEDGER_LOG_LEVEL": "WARNING",
            # Every client registers from the loopback address; the limit is not measured.
            "TASKLEDGER_REGISTER_MAX_PER_CLIENT": "1000000000",
        }
        try:
            results = []
            port = free_port()
            # Serving processes never create the schema: migrate first, as deployments do.
            subprocess.run([sys.executable, "-m", "ops", "migrate"], env=env, check=True)
            with server("api", ["ops", "serve", "api", "--port", str(port)], port, env, work):
                tokens = asyncio.run(sign_up(port, clients))
                results.append(
                    asyncio.run(
                        measure_http(
                            "POST /v1/tasks (taskledger, PostgreSQL)",
                            port,
                            tokens,
                            warmup=warmup,
                            seconds=seconds,
                        )
                    )
                )
            port = free_port()
            with server("trivial", ["ops.bench.trivial", "--port", str(port)], port, env, work):
                results.append(
                    asyncio.run(
                        measure_http(
                            "trivial FastAPI endpoint",
                            port,
                            [None] * clients,
                            warmup=warmup,
                            seconds=seconds,
                        )
                    )
                )
            results.append(
                asyncio.run(measure_inserts(db_url, clients, warmup=warmup, seconds=seconds))
            )
        finally:
            mongo.stop()
            _forget(redis_url, prefix)
        report(results, clients, seconds, settings)


def _forget(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


if __name__ == "__main__":
    typer.run(main)
