"""``taskledger migrate`` is the schema's one owner: many at once never race, and a serving
process that finds no schema says so in one line instead of creating it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.services import PG_ADMIN_URL

MIGRATORS = 6


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, as a first deployment finds it."""
    name = f"tl_migrate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(tmp_path: Path, event_store_url: str | None, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKLEDGER_", "POSTGRES_"))}
    env |= {
        "TASKLEDGER_DATA_DIR": str(tmp_path / "data"),
        "TASKLEDGER_REDIS_URL": redis_url,
        "TASKLEDGER_MONGO_URL": "mongodb://127.0.0.1:1/unused",
        "TASKLEDGER_JWT_SECRET": "migrate-test-secret-of-at-least-32-bytes",
    }
    if event_store_url is not None:
        env["TASKLEDGER_EVENT_STORE_URL"] = event_store_url
    return env


def _taskledger(*args: str) -> list[str]:
    return [sys.executable, "-m", "ops", *args]


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def test_many_migrators_at_once_on_a_fresh_database_never_race(
    tmp_path: Path, fresh_database: str, redis_url: str
) -> None:
    env = _env(tmp_path, fresh_database, redis_url)
    started = [
        subprocess.Popen(
            _taskledger("migrate"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(MIGRATORS)
    ]
    results = [(p.wait(120), *p.communicate()) for p in started]
    assert [code for code, _, _ in results] == [0] * MIGRATORS, [err for _, _, err in results]
    said = sorted(out.strip() for _, out, _ in results)
    # Exactly one of them created the tables; every other one found them there.
    assert said == sorted(
        ["created the event tables of Identity, Tasks"] + ["already migrated"] * (MIGRATORS - 1)
    )
    assert {"identity_events", "tasks_events"} <= set(_tables(fresh_database))


@pytest.mark.parametrize("store", ["postgres", "sqlite"])
def test_serving_without_a_schema_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, fresh_database: str, redis_url: str, store: str
) -> None:
    env = _env(tmp_path, fresh_database if store == "postgres" else None, redis_url)
    for command in (["serve", "projector"], ["serve", "api"], ["projections", "status"]):
        done = subprocess.run(
            _taskledger(*command), env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (command, done.stderr)
        assert "has no tables for Identity, Tasks" in lines[0]
        assert "run `taskledger migrate` first" in lines[0]
    if store == "postgres":
        assert _tables(fresh_database) == []  # nothing created them behind our back
    else:
        data = tmp_path / "data"
        assert not list(data.glob("events.*.sqlite"))

    migrated = subprocess.run(
        _taskledger("migrate"), env=env, capture_output=True, text=True, timeout=120
    )
    assert (migrated.returncode, migrated.stdout.strip()) == (
        0,
        "created the event tables of Identity, Tasks",
    )
    again = subprocess.run(
        _taskledger("migrate"), env=env, capture_output=True, text=True, timeout=120
    )
    assert (again.returncode, again.stdout.strip()) == (0, "already migrated")
