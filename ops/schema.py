"""The event store's schema has one owner: ``taskledger migrate``.

Serving processes open the store with table creation off (``ops.bootstrap.event_store_env``)
and check that the tables are there first (``require_schema``): replicas that start together
on a new PostgreSQL database would otherwise all run eventsourcing's ``CREATE … IF NOT
EXISTS`` at once, which is not safe concurrently (two creators collide on a type's name in
``pg_type``). ``migrate`` creates them, idempotently, one migrator at a time: under a
PostgreSQL advisory lock, or a file lock beside a SQLite store.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from ops.bootstrap import APPLICATIONS, event_store_env
from ops.settings import Settings

# pg_advisory_lock's key: any constant of our own ("tlmigrat" read as a 64-bit integer).
MIGRATION_LOCK = int.from_bytes(b"tlmigrat", "big", signed=True)


class SchemaMissingError(Exception):
    """The event store has no tables (yet): ``taskledger migrate`` creates them."""


def _sqlite_files(env: dict[str, str]) -> dict[str, Path]:
    return {name: Path(env[f"{name.upper()}_SQLITE_DBNAME"]) for name in APPLICATIONS}


def _postgres_params(env: dict[str, str]) -> dict[str, Any]:
    return {
        "dbname": env["POSTGRES_DBNAME"],
        "host": env["POSTGRES_HOST"],
        "port": env["POSTGRES_PORT"],
        "user": env["POSTGRES_USER"],
        "password": env["POSTGRES_PASSWORD"],
        "connect_timeout": env["POSTGRES_CONNECT_TIMEOUT"],
    }


def _table(name: str) -> str:
    # eventsourcing's PostgreSQL recorder names an application's table after it, lower case.
    return f"{name.lower()}_events"


def missing_tables(settings: Settings) -> list[str]:
    """The applications whose event tables are missing; [] once migrated."""
    env = event_store_env(settings)
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        missing = []
        for name, path in _sqlite_files(env).items():
            if not path.exists():
                missing.append(name)
                continue
            with closing(sqlite3.connect(path)) as db:
                found = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stored_events'"
                ).fetchone()
            if found is None:
                missing.append(name)
        return missing
    import psycopg

    with psycopg.connect(**_postgres_params(env)) as conn:
        return [
            name
            for name in APPLICATIONS
            if conn.execute("SELECT to_regclass(%s)", (_table(name),)).fetchone() == (None,)
        ]


def require_schema(settings: Settings) -> None:
    """Serving processes call this first: no schema is one line, not a traceback later."""
    missing = missing_tables(settings)
    if missing:
        raise SchemaMissingError(
            f"the event store has no tables for {', '.join(missing)}: "
            "run `taskledger migrate` first (serving processes never create them)"
        )


@contextmanager
def _migration_lock(env: dict[str, str]) -> Iterator[None]:
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        lock_path = Path(env["SQLITE_DBNAME"]).with_suffix(".migrate.lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield
        return
    import psycopg

    with psycopg.connect(**_postgres_params(env), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def migrate(settings: Settings) -> list[str]:
    """Create whatever tables are missing, one migrator at a time; the applications whose
    tables this run created (none when already migrated)."""
    from projections.log import UpstreamReader

    env = {**event_store_env(settings), "CREATE_TABLE": "y", "POSTGRES_POOL_SIZE": "1"}
    with _migration_lock(env):
        missing = missing_tables(settings)
        for name in missing:
            # Opening an application with CREATE_TABLE on creates its tables and indexes.
            UpstreamReader(name, env).close()
    return missing
