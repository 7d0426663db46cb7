"""Mail through the broker: the request never waits for SMTP, and how fast mail flows.

    python -m ops.bench.mail [--clients 8] [--seconds 10] [--warmup 2] [--users 300]
                             [--paced 100] [--backlog 1500]

Real processes on this machine: ``taskledger serve api``, ``serve projector`` (the relay),
``serve mailer`` (one, then two), the SMTP sink (``python -m ops.smtp_sink``, healthy or
answering each mail after 2 s), SecantusDB for the projector's checkpoints, Redis at
TASKLEDGER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0) under a prefix of its own, and the
embedded SQLite event store. Each figure is printed beside a baseline measured in the same run:

- forgot-password p50/p99 (closed loop), healthy sink and 2 s/mail sink, beside a trivial
  FastAPI endpoint under the same uvicorn setup;
- delivery latency p50/p99 from the request to SMTP acceptance (the .eml file written before
  the 250), at a paced rate, beside one bare aiosmtplib send to the same sink;
- mails/s draining a backlog with 1 and 2 mailer processes, beside bare aiosmtplib sends at
  the same concurrency.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from email import message_from_bytes, policy
from pathlib import Path
from typing import Annotated

import aiosmtplib
import redis
import typer

from ops.bench.load import HttpConnection, Operation, Result, closed_loop
from ops.embedded import http_ok
from ops.engines import Daemon, free_port, mongo_url_for, port_open, secantus

LOOPBACK = "127.0.0.1"
PASSWORD = "benchmark password"  # noqa: S105 - the benchmark users' own
SLOW = 2.0  # seconds the slow sink takes per mail


class Stage:
    """The processes of one run, started and stopped by name."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.mail = work / "mail"
        self.smtp_port = free_port()
        self.api_port = free_port()
        self.daemons: dict[str, Daemon] = {}
        # Serving processes never create the schema: migrate first, as deployments do.
        subprocess.run([sys.executable, "-m", "ops", "migrate"], env=env, check=True)

    def start(self, name: str, argv: list[str], ready: Callable[[], bool]) -> None:
        daemon = Daemon(name, argv, ready, self.work / "logs" / f"{name}.log", env=self.env)
        daemon.start(timeout=90)
        self.daemons[name] = daemon

    def stop(self, name: str) -> None:
        self.daemons.pop(name).stop()

    def stop_all(self) -> None:
        for name in reversed(list(self.daemons)):
            self.stop(name)

    def sink(self, delay: float = 0.0) -> None:
        argv = [
            sys.executable,
            "-m",
            "ops.smtp_sink",
            "--port",
            str(self.smtp_port),
            "--dir",
            str(self.mail),
            "--delay",
            str(delay),
        ]
        self.start("sink", argv, lambda: port_open(LOOPBACK, self.smtp_port))

    def taskledger(self, name: str, *args: str) -> None:
        port = free_port()
        self.start(
            name,
            [sys.executable, "-m", "ops", *args, "--metrics-port", str(port)],
            http_ok(f"http://{LOOPBACK}:{port}/metrics"),
        )

    def api(self) -> None:
        argv = [sys.executable, "-m", "ops", "serve", "api", "--port", str(self.api_port)]
        self.start("api", argv, http_ok(f"http://{LOOPBACK}:{self.api_port}/health/live"))

    def trivial(self) -> int:
        port = free_port()
        self.start(
            "trivial",
            [sys.executable, "-m", "ops.bench.trivial", "--port", str(port)],
            http_ok(f"http://{LOOPBACK}:{port}/docs"),
        )
        return port


def accepted(directory: Path) -> list[tuple[float, str, str]]:
    """(acceptance time, recipient, subject) of every mail the sink has written."""
    found = []
    for path in directory.glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found.append((path.stat().st_mtime, str(message["To"]), str(message["Subject"])))
    return sorted(found)


def count(directory: Path) -> int:
    return sum(1 for _ in directory.glob("*.eml"))


def wait_for_mails(directory: Path, total: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while count(directory) < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count(directory)} of {total} mails after {timeout:.0f}s")
        time.sleep(0.2)


async def register(port: int, emails: list[str], clients: int) -> None:
    connections = [await HttpConnection.open(LOOPBACK, port) for _ in range(clients)]
    queue = list(emails)

    async def worker(connection: HttpConnection) -> None:
        while queue:
            email = queue.pop()
            status, body = await connection.request(
                "POST", "/v1/auth/register", {"email": email, "password": PASSWORD}
            )
            if status != 201:
                raise RuntimeError(f"register answered {status}: {body[:200]!r}")

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()


async def forgot_loop(
    name: str, port: int, emails: list[str], clients: int, *, warmup: float, seconds: float
) -> tuple[Result, int]:
    """Closed loop of forgot-password; also how many were accepted in all (warm-up included)."""
    connections = [await HttpConnection.open(LOOPBACK, port) for _ in range(clients)]
    sent = [0]

    def operation(connection: HttpConnection) -> Operation:
        async def forgot() -> str | None:
            email = emails[sent[0] % len(emails)]
            sent[0] += 1
            status, body = await connection.request(
                "POST", "/v1/auth/forgot-password", {"email": email}
            )
            return None if status == 202 else f"{status} {body[:200]!r}"

        return forgot

    try:
        result = await closed_loop(
            name, [operation(c) for c in connections], warmup=warmup, seconds=seconds
        )
    finally:
        for connection in connections:
            await connection.close()
    return result, sent[0]


async def trivial_loop(port: int, clients: int, *, warmup: float, seconds: float) -> Result:
    connections = [await HttpConnection.open(LOOPBACK, port) for _ in range(clients)]

    def operation(connection: HttpConnection) -> Operation:
        async def post() -> str | None:
            status, body = await connection.request("POST", "/v1/tasks", {"title": "t"})
            return None if status == 201 else f"{status} {body[:200]!r}"

        return post

    try:
        return await closed_loop(
            "trivial FastAPI endpoint",
            [operation(c) for c in connections],
            warmup=warmup,
            seconds=seconds,
        )
    finally:
        for connection in connections:
            await connection.close()


async def paced_requests(port: int, emails: list[str], interval: float) -> dict[str, float]:
    """One forgot-password per user, every ``interval`` s; when each was sent (wall clock)."""
    connection = await HttpConnection.open(LOOPBACK, port)
    sent: dict[str, float] = {}
    try:
        for email in emails:
            sent[email] = time.time()
            status, body = await connection.request(
                "POST", "/v1/auth/forgot-password", {"email": email}
            )
            if status != 202:
                raise RuntimeError(f"forgot-password answered {status}: {body[:200]!r}")
            await asyncio.sleep(interval)
    finally:
        await connection.close()
    return sent


def _message(n: int) -> str:
    return (
        f"From: bench@taskledger.localhost\r\nTo: raw{n}@example.com\r\n"
        f"Subject: raw {n}\r\n\r\nbaseline\r\n"
    )


async def raw_sends(port: int, total: int, concurrency: int) -> list[float]:
    """Bare aiosmtplib sends to the sink: the SMTP floor under the mailer. Latencies, in s."""
    latencies: list[float] = []
    numbers = list(range(total))

    async def worker() -> None:
        while numbers:
            n = numbers.pop()
            began = time.perf_counter()
            await aiosmtplib.send(
                _message(n),
                sender="bench@taskledger.localhost",
                recipients=[f"raw{n}@example.com"],
                hostname=LOOPBACK,
                port=port,
                timeout=30,
            )
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def drain_rate(stage: Stage, mailers: int, backlog: int, already: int) -> float:
    """Mails/s of ``mailers`` processes draining ``backlog`` mails published all at once.

    The events wait in the store (projector stopped) while the mailers start, so no mailer's
    start-up eats into another's run; then the relay publishes them in a few batches.
    """
    for n in range(mailers):
        stage.taskledger(f"mailer-{n}", "serve", "mailer")
    stage.taskledger("projector", "serve", "projector")
    wait_for_mails(stage.mail, already + backlog)
    times = [t for t, _, _ in accepted(stage.mail)][already:]
    for n in range(mailers):
        stage.stop(f"mailer-{n}")
    return (len(times) - 1) / (times[-1] - times[0])


@contextmanager
def engines(work: Path, redis_url: str) -> Iterator[dict[str, str]]:
    mongo_port = free_port()
    mongo = secantus(work / "mongo", mongo_port, log_dir=work / "logs")
    mongo.start()
    prefix = f"tlbench:{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")} | {
        "TASKLEDGER_DATA_DIR": str(work),
        "TASKLEDGER_REDIS_URL": redis_url,
        "TASKLEDGER_REDIS_PREFIX": prefix,
        "TASKLEDGER_MONGO_URL": mongo_url_for(LOOPBACK, mongo_port, "bench"),
        "TASKLEDGER_LOG_LEVEL": "WARNING",
        # The hashing cost and the rate limits are not what this measures.
        "TASKLEDGER_ARGON2_TIME_COST": "1",
        "TASKLEDGER_ARGON2_MEMORY_COST": "64",
        "TASKLEDGER_FORGOT_PASSWORD_MAX": "1000000000",
        "TASKLEDGER_FORGOT_PASSWORD_MAX_PER_CLIENT": "1000000000",
        "TASKLEDGER_REGISTER_MAX_PER_CLIENT": "1000000000",
    }
    try:
        yield env
    finally:
        mongo.stop()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def main(
    clients: Annotated[int, typer.Option(min=1, help="Concurrent HTTP clients.")] = 8,
    seconds: Annotated[float, typer.Option(min=1, help="Measured seconds per loop.")] = 10,
    warmup: Annotated[float, typer.Option(min=0, help="Unmeasured seconds first.")] = 2,
    users: Annotated[int, typer.Option(min=10, help="Registered users.")] = 300,
    paced: Annotated[int, typer.Option(min=10, help="Paced requests for latency.")] = 100,
    backlog: Annotated[int, typer.Option(min=10, help="Mails per drain run.")] = 1500,
) -> None:
    """Run every phase and print the figures beside their baselines."""
    redis_url = os.environ.get("TASKLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    with (
        tempfile.TemporaryDirectory(prefix="tl-bench-mail-") as tmp,
        engines(Path(tmp), redis_url) as env,
        ExitStack() as stack,
    ):
        work = Path(tmp)
        stage = Stage(work, dict(env))
        stage.env["TASKLEDGER_SMTP_URL"] = f"smtp://{LOOPBACK}:{stage.smtp_port}"
        stack.callback(stage.stop_all)
        emails = [f"bench-{n}-{uuid.uuid4().hex[:6]}@example.com" for n in range(users)]

        stage.sink()
        stage.api()
        stage.taskledger("projector", "serve", "projector")
        stage.taskledger("mailer", "serve", "mailer")
        port = stage.api_port
        asyncio.run(register(port, emails, clients))
        wait_for_mails(stage.mail, users)
        typer.echo(f"{users} users registered, welcome mails delivered", err=True)

        # Forgot-password, healthy sink.
        healthy, sent_a = asyncio.run(
            forgot_loop(
                "forgot-password, healthy SMTP",
                port,
                emails,
                clients,
                warmup=warmup,
                seconds=seconds,
            )
        )
        total = users + sent_a
        wait_for_mails(stage.mail, total)

        # Delivery latency, paced well under capacity.
        began = time.time()
        paced_emails = emails[:paced]
        sent_at = asyncio.run(paced_requests(port, paced_emails, 0.05))
        total += paced
        wait_for_mails(stage.mail, total)
        delivered = {
            to: t
            for t, to, subject in accepted(stage.mail)
            if t >= began and subject.startswith("Reset")
        }
        delivery = [delivered[e] - sent_at[e] for e in paced_emails]
        raw_latency = asyncio.run(raw_sends(stage.smtp_port, paced, 1))
        total += paced

        # Forgot-password, a sink that takes 2 s per mail.
        stage.stop("sink")
        stage.sink(delay=SLOW)
        slow, sent_c = asyncio.run(
            forgot_loop(
                f"forgot-password, SMTP {SLOW:.0f} s/mail",
                port,
                emails,
                clients,
                warmup=warmup,
                seconds=seconds,
            )
        )
        stage.stop("sink")
        stage.sink()
        total += sent_c
        wait_for_mails(stage.mail, total)
        trivial_port = stage.trivial()
        trivial = asyncio.run(trivial_loop(trivial_port, clients, warmup=warmup, seconds=seconds))
        stage.stop("trivial")

        # Draining a backlog with 1, then 2 mailer processes.
        rates: dict[int, float] = {}
        stage.stop("mailer")
        for mailers in (1, 2):
            stage.stop("projector")
            asyncio.run(paced_requests(port, (emails * (backlog // users + 1))[:backlog], 0))
            rates[mailers] = drain_rate(stage, mailers, backlog, total)
            total += backlog
        raw_rates = {}
        for concurrency in (8, 16):
            began_raw = time.perf_counter()
            asyncio.run(raw_sends(stage.smtp_port, backlog, concurrency))
            raw_rates[concurrency] = backlog / (time.perf_counter() - began_raw)

    report(healthy, slow, trivial, delivery, raw_latency, rates, raw_rates, clients, seconds)


def report(
    healthy: Result,
    slow: Result,
    trivial: Result,
    delivery: list[float],
    raw_latency: list[float],
    rates: dict[int, float],
    raw_rates: dict[int, float],
    clients: int,
    seconds: float,
) -> None:
    ms = 1000.0
    print(f"\nforgot-password, {clients} concurrent clients, {seconds:.0f} s measured per row")
    print(f"{'':38} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for result in (healthy, slow, trivial):
        print(
            f"{result.name:38} {result.rate:8.0f} {result.percentile(50) * ms:8.2f} "
            f"{result.percentile(99) * ms:8.2f} {result.errors:7d}"
        )
        if result.first_error:
            print(f"    first error: {result.first_error}")
    print(
        f"slow SMTP / healthy SMTP p50 = "
        f"{slow.percentile(50) / healthy.percentile(50):.2f}x, p99 = "
        f"{slow.percentile(99) / healthy.percentile(99):.2f}x"
    )
    print(f"\ndelivery, request -> SMTP acceptance ({len(delivery)} paced requests, 20/s)")
    print(f"{'':38} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{'taskledger (API, relay, mailer)':38} {pct(delivery, 50) * ms:8.1f} "
        f"{pct(delivery, 99) * ms:8.1f}"
    )
    print(
        f"{'bare aiosmtplib send (baseline)':38} {pct(raw_latency, 50) * ms:8.1f} "
        f"{pct(raw_latency, 99) * ms:8.1f}"
    )
    print("\nmailer throughput, draining a backlog (mails/s)")
    for mailers, rate in rates.items():
        print(f"{f'{mailers} mailer process(es), 8 in flight each':38} {rate:8.0f}")
    for concurrency, rate in raw_rates.items():
        print(f"{f'bare aiosmtplib, {concurrency} in flight':38} {rate:8.0f}")


if __name__ == "__main__":
    typer.run(main)
