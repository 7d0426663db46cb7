"""Soak: ``taskledger up`` held at 80% of its measured maximum command rate, reads mixed in.

It starts ``up`` on a scratch data dir, measures the maximum rate of ``POST /v1/tasks`` with
closed-loop clients (the baseline), then paces commands (creates and status changes, each
followed by a ``GET /v1/tasks``) at a fraction of it for the soak's duration. It reports the
RSS of every process of the tree at the soak's start and end, the errors by kind, and the
events the soak appended to the task log beside the commands that were accepted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import psutil
import typer

from ops.bench.commands import post_tasks, sign_up
from ops.bench.load import HttpConnection
from ops.engines import free_port

LOOPBACK = "127.0.0.1"
# The first answer of each kind of error, to say what it was.
first_errors: dict[str, str] = {}


def start_up(work: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")} | {
        "TASKLEDGER_DATA_DIR": str(work / "data"),
        "TASKLEDGER_LOG_LEVEL": "WARNING",
        "TASKLEDGER_REGISTER_MAX_PER_CLIENT": "1000000000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ops", "up", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=(work / "up.err").open("wb"),
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(b"taskledger is up at "):
            return process
    raise RuntimeError(f"taskledger up did not start; see {work / 'up.err'}")


def rss_by_child(up: subprocess.Popen[bytes]) -> dict[str, float]:
    """MiB per process of the tree, named by what it runs."""
    found = {"up": psutil.Process(up.pid).memory_info().rss / 2**20}
    for child in psutil.Process(up.pid).children():
        line = " ".join(child.cmdline())
        name = next(
            (
                name
                for name, marker in (
                    ("api", "serve api"),
                    ("projector", "serve projector"),
                    ("mailer", "serve mailer"),
                    ("smtp-sink", "smtp_sink"),
                    ("redis", "redis-server"),
                    ("secantusdb", "secantusd"),
                )
                if marker in line
            ),
            str(child.pid),
        )
        found[name] = child.memory_info().rss / 2**20
    return found


def task_events(data_dir: Path) -> int:
    with sqlite3.connect(f"file:{data_dir / 'events.tasks.sqlite'}?mode=ro", uri=True) as db:
        count: int = db.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
        return count


@dataclass
class Session:
    """One keep-alive connection of one user, and the tasks it created."""

    connection: HttpConnection
    headers: dict[str, str]
    mine: list[str] = field(default_factory=list)
    sent: int = 0


async def paced(
    port: int, tokens: list[str | None], rate: float, seconds: float, per_user: int = 4
) -> tuple[Counter[str], int, int]:
    """Open loop: a command is due every 1/rate s, on whichever connection is free, and is
    followed there by a read. A command due while every connection is busy is not sent, and
    counted: the load generator never bursts to catch up. Returns the answers by kind and
    status, the commands accepted, and the commands not sent."""
    answers: Counter[str] = Counter()
    accepted = skipped = 0
    sessions = [
        Session(await HttpConnection.open(LOOPBACK, port), {"Authorization": f"Bearer {token}"})
        for token in tokens
        for _ in range(per_user)
    ]
    free: asyncio.Queue[Session] = asyncio.Queue()
    for session in sessions:
        free.put_nowait(session)

    async def command(session: Session) -> None:
        nonlocal accepted
        session.sent += 1
        request = session.connection.request
        if session.mine and session.sent % 2 == 0:
            # The task created just before, still todo: setting a status it already has
            # would append no event.
            path = f"/v1/tasks/{session.mine[-1]}"
            status, body = await request("PATCH", path, {"status": "in_progress"}, session.headers)
            kind, ok = "status", 200
        else:
            status, body = await request("POST", "/v1/tasks", {"title": "soak"}, session.headers)
            kind, ok = "create", 201
            if status == ok:
                session.mine.append(json.loads(body)["id"])
        answers[f"{kind} {status}"] += 1
        accepted += status == ok
        if status != ok:
            first_errors.setdefault(f"{kind} {status}", body[:300].decode())
        status, body = await request("GET", "/v1/tasks?limit=20", None, session.headers)
        answers[f"list {status}"] += 1
        if status != 200:
            first_errors.setdefault(f"list {status}", body[:300].decode())
        free.put_nowait(session)

    loop = asyncio.get_running_loop()
    start = loop.time()
    running: set[asyncio.Task[None]] = set()
    for n in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
        if free.empty():
            skipped += 1
            continue
        task = asyncio.create_task(command(free.get_nowait()))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    for session in sessions:
        await session.connection.close()
    return answers, accepted, skipped


def main(
    seconds: Annotated[float, typer.Option(min=10, help="Soak duration.")] = 600,
    load: Annotated[float, typer.Option(min=0.1, max=1, help="Share of the max rate.")] = 0.8,
    clients: Annotated[int, typer.Option(min=1, help="Concurrent clients.")] = 8,
    probe: Annotated[float, typer.Option(min=1, help="Seconds measuring the max rate.")] = 10,
) -> None:
    """Measure the max command rate of ``up``, then soak it; print RSS, errors and events."""
    with tempfile.TemporaryDirectory(prefix="tl-soak-") as tmp:
        work = Path(tmp)
        port = free_port()
        up = start_up(work, port)
        try:
            tokens: list[str | None] = list(asyncio.run(sign_up(port, clients)))
            # The closed-loop maximum (the CPU figure of this row measures up itself, unused).
            probed = post_tasks("max", port, tokens, up.pid, warmup=2, seconds=probe)
            maximum = asyncio.run(probed).result.rate
            rate = load * maximum
            typer.echo(
                f"max command rate {maximum:.0f}/s; soaking at {rate:.0f}/s for {seconds:.0f}s"
            )
            time.sleep(2)  # let the projector drain the probe's backlog before the baseline RSS
            before, events_before = rss_by_child(up), task_events(work / "data")
            answers, accepted, skipped = asyncio.run(paced(port, tokens, rate, seconds))
            after, events_after = rss_by_child(up), task_events(work / "data")
            restarts = (work / "up.err").read_text().count(" restarted (pid")
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(60)
    report(
        maximum,
        rate,
        seconds,
        before,
        after,
        answers,
        accepted,
        skipped,
        events_after - events_before,
    )
    typer.echo(f"children restarted by up during the run: {restarts}")


def report(
    maximum: float,
    rate: float,
    seconds: float,
    before: dict[str, float],
    after: dict[str, float],
    answers: Counter[str],
    accepted: int,
    skipped: int,
    events: int,
) -> None:
    typer.echo(f"\nsoak: {seconds:.0f}s at {rate:.0f} commands/s (max measured {maximum:.0f}/s)")
    typer.echo(f"{'process':<12} {'RSS start MiB':>14} {'RSS end MiB':>12} {'growth':>8}")
    for name in sorted(before):
        start, end = before[name], after.get(name, float("nan"))
        typer.echo(f"{name:<12} {start:>14.1f} {end:>12.1f} {100 * (end / start - 1):>7.1f}%")
    errors = {k: v for k, v in answers.items() if not k.split()[1].startswith("2")}
    typer.echo(f"answers: {dict(sorted(answers.items()))}")
    typer.echo(f"errors: {sum(errors.values())} {errors or ''}")
    for kind, body in first_errors.items():
        typer.echo(f"  first {kind}: {body}")
    achieved = accepted / seconds
    typer.echo(
        f"commands accepted {accepted} ({achieved:.1f}/s), not sent (every connection busy) "
        f"{skipped}; task events appended {events}"
    )


if __name__ == "__main__":
    typer.run(main)
