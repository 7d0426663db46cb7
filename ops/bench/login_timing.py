"""Login timing: an unknown email against a wrong password for a registered one.

Both must take the same path (two event-store reads, one argon2 verification), so that the
time of a 401 does not tell whether an email is registered. The two kinds of attempt are
alternated, ``--tries`` of each, through the real ``Accounts.login`` (Redis throttles, event
store, argon2 at the configured costs); the p50s must differ by less than 5%. The HTTP layer
in front is the same code for both, so it is left out of the measurement.

Beside them, the baseline of the same run: the event-store lookup alone, as login now does it
(two reads either way) and as it did before (one read for an unknown email).

    python -m ops.bench.login_timing [--tries 500] [--time-cost 3] [--memory-cost 65536]

SQLite event store in a scratch directory; Redis at TASKLEDGER_BENCH_REDIS_URL (default
redis://127.0.0.1:6379/0) under a prefix of its own, removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import redis
import typer
from eventsourcing.application import AggregateNotFoundError

from commands.identity import Identity
from domain.errors import InvalidCredentials
from domain.identity import EmailIndex
from domain.meta import meta
from ops.bootstrap import build_auth, build_write_side, redis_client
from ops.settings import Settings

PASSWORD = "correct horse battery staple"  # noqa: S105 - a benchmark account's
# Far above any number of tries: the benchmark measures the path, not the throttle.
UNTHROTTLED = 10_000_000


def _p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _line(name: str, unknown: list[float], known: list[float]) -> str:
    a, b = _p50(unknown), _p50(known)
    return (
        f"{name:<34} unknown p50 {a:8.3f} ms   known p50 {b:8.3f} ms   "
        f"difference {abs(a - b) / max(a, b) * 100:5.2f}%"
    )


async def _alternate(
    tries: int, unknown: Callable[[], Awaitable[None]], known: Callable[[], Awaitable[None]]
) -> tuple[list[float], list[float]]:
    times: tuple[list[float], list[float]] = ([], [])
    for n in range(2 * tries):
        # Alternated, and the order flipped every pair, so neither kind always goes first.
        kind = (n + n // 2) % 2
        started = time.perf_counter()
        await (unknown, known)[kind]()
        times[kind].append(time.perf_counter() - started)
    return times


def _old_lookup(identity: Identity, email: str) -> object:
    # The lookup before this change: an unknown email stopped after reading the index.
    try:
        index: EmailIndex = identity.repository.get(EmailIndex.create_id(email))
    except AggregateNotFoundError:
        return None
    return identity.get_user(index.user_id)


async def _run(settings: Settings, tries: int) -> list[str]:
    write_side = build_write_side(settings)
    client = redis_client(settings)
    try:
        auth = build_auth(settings, write_side.identity, client)
        accounts, identity = auth.accounts, write_side.identity
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        await accounts.register(
            email=email, password=PASSWORD, display_name="B", client="b", meta=meta(None, "b")
        )

        async def failing(address: str) -> None:
            try:
                await accounts.login(
                    email=address,
                    password="wrong password",  # noqa: S106 - the failure being timed
                    client="bench",
                )
            except InvalidCredentials:
                return
            raise AssertionError("a wrong password logged in")

        def lookup(find: Callable[[str], object], address: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                find(address)

            return run

        async def unknown() -> None:
            await failing(f"nobody-{uuid.uuid4().hex[:8]}@example.com")

        async def known() -> None:
            await failing(email)

        await _alternate(10, unknown, known)  # warm-up: connections, caches
        lines = [_line("login (401)", *await _alternate(tries, unknown, known))]
        fresh = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
        lines.append(
            _line(
                "lookup now (find_by_email)",
                *await _alternate(
                    tries,
                    lookup(identity.find_by_email, fresh),
                    lookup(identity.find_by_email, email),
                ),
            )
        )
        lines.append(
            _line(
                "baseline: lookup before (1 read)",
                *await _alternate(
                    tries,
                    lookup(lambda e: _old_lookup(identity, e), fresh),
                    lookup(lambda e: _old_lookup(identity, e), email),
                ),
            )
        )
        return lines
    finally:
        await client.aclose()
        write_side.close()


def main(
    tries: Annotated[int, typer.Option(help="attempts of each kind")] = 500,
    time_cost: Annotated[int, typer.Option(help="argon2 time cost")] = 3,
    memory_cost: Annotated[int, typer.Option(help="argon2 memory cost, KiB")] = 65_536,
) -> None:
    redis_url = os.environ.get("TASKLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"tl-bench-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory() as work:
        settings = Settings.model_validate(
            {
                "data_dir": Path(work),
                "redis_url": redis_url,
                "redis_prefix": prefix,
                "jwt_secret": "benchmark-secret-of-at-least-32-bytes!!",
                "argon2_time_cost": time_cost,
                "argon2_memory_cost": memory_cost,
                "login_max_failures": UNTHROTTLED,
                "login_max_failures_per_client": UNTHROTTLED,
                "login_account_slowdown_after": UNTHROTTLED,
            }
        )
        try:
            lines = asyncio.run(_run(settings, tries))
        finally:
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
    print(f"{tries} tries of each, alternated; argon2id t={time_cost} m={memory_cost} KiB")
    for line in lines:
        print(line)


if __name__ == "__main__":
    typer.run(main)
