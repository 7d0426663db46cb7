"""Backup and restore of the embedded event stores: the system of record, one file per log.

``backup`` copies each SQLite event store with SQLite's online backup API (a consistent
snapshot while ``up`` keeps writing; a file copy could tear a page or miss the write-ahead
log), then, from the running Redis, the mailer's record of the mails it has sent. The manifest
says, per file, the log's position (highest notification id), its event count and a SHA-256.

``restore`` puts a backup into a stopped data dir: it checks every checksum, replaces the event
stores, and empties the embedded document store and Redis, so the next ``up`` rebuilds every
read model from the restored logs and every session is gone. The mailer's record of sent mails
is loaded into the fresh Redis: the relay replays recent events from position 0, and the mailer
finds those mails sent instead of mailing them again.

PostgreSQL is backed up with its own tools (base backup plus WAL archiving): see the README.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.bootstrap import APPLICATIONS, event_store_env
from ops.settings import Settings

MANIFEST = "manifest.json"
MAIL_LEDGER = "mail-ledger.json"
FORMAT = 1
# The embedded engines' data under the data dir (ops.embedded): dropped by a restore.
ENGINE_DIRS = ("mongo", "redis")


class BackupError(Exception):
    """A backup or restore that cannot be done as asked; the message is one line."""


@dataclass(frozen=True, slots=True)
class StoreCopy:
    file: str
    application: str | None  # None for the shared file beside the per-application ones
    position: int  # the highest notification id in the copy
    events: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    format: int
    created_at: str
    stores: list[StoreCopy]
    mail_ledger: dict[str, Any] | None  # {"file", "entries", "sha256"}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        try:
            data = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise BackupError(f"{directory} is not a taskledger backup: {exc}") from None
        if data.get("format") != FORMAT:
            raise BackupError(f"{directory}: unknown backup format {data.get('format')!r}")
        return cls(
            format=FORMAT,
            created_at=data["created_at"],
            stores=[StoreCopy(**store) for store in data["stores"]],
            mail_ledger=data.get("mail_ledger"),
        )


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def event_store_files(settings: Settings) -> dict[str, str | None]:
    """The embedded event store's files (path -> application), those that exist."""
    env = event_store_env(settings)
    if env["PERSISTENCE_MODULE"] != "eventsourcing.sqlite":
        raise BackupError(
            "the event store is PostgreSQL: back it up with a base backup and WAL archiving "
            "(README, Backup and restore); `taskledger backup` copies the embedded SQLite stores"
        )
    files: dict[str, str | None] = {env["SQLITE_DBNAME"]: None}
    files |= {env[f"{name.upper()}_SQLITE_DBNAME"]: name for name in APPLICATIONS}
    return {path: app for path, app in files.items() if Path(path).exists()}


def _log_figures(path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as db:
        found = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stored_events'"
        ).fetchone()
        if found is None:
            return 0, 0
        count, last = db.execute("SELECT COUNT(*), MAX(rowid) FROM stored_events").fetchone()
    return int(last or 0), int(count)


def _empty_target(target: Path) -> None:
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new directory")
    target.mkdir(parents=True, exist_ok=True)


def up_env(data_dir: Path) -> dict[str, str]:
    """The engine URLs a running ``up`` published in ``<data dir>/up.env``; {} when none runs."""
    try:
        text = (data_dir / "up.env").read_text()
    except FileNotFoundError:
        return {}
    found = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            found[key] = value
    return found


def backup(settings: Settings, target: Path) -> Manifest:
    """A consistent copy of every embedded event store, then the mailer's sent mails."""
    sources = event_store_files(settings)
    if not sources:
        raise BackupError(f"no event store in {settings.data_dir} to back up")
    _empty_target(target)
    stores = []
    for path, application in sources.items():
        copy = target / Path(path).name
        # All pages in one step: one read transaction, so one consistent snapshot while
        # writers carry on (WAL mode never blocks them).
        with (
            closing(sqlite3.connect(path, timeout=30)) as source,
            closing(sqlite3.connect(copy)) as destination,
        ):
            source.backup(destination)
        position, events = _log_figures(copy)
        stores.append(StoreCopy(copy.name, application, position, events, sha256(copy)))
    # After the event stores: a mail sent meanwhile is then either for an event past the
    # copy (never replayed) or recorded here as sent.
    ledger = _save_mail_ledger(settings, target / MAIL_LEDGER)
    manifest = Manifest(FORMAT, datetime.now(UTC).isoformat(), stores, ledger)
    (target / MANIFEST).write_text(manifest.to_json())
    return manifest


def _redis_url(settings: Settings) -> str | None:
    return settings.redis_url or up_env(settings.data_dir.resolve()).get("TASKLEDGER_REDIS_URL")


def _save_mail_ledger(settings: Settings, path: Path) -> dict[str, Any] | None:
    import redis

    url = _redis_url(settings)
    if url is None:
        return None  # no up running and no Redis configured: nothing has been mailed
    pattern = f"{settings.redis_prefix}mailer:state:*"
    entries = []
    client = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
    with closing(client):
        for key in client.scan_iter(match=pattern, count=1000):
            state = client.get(key)
            ttl = client.pttl(key)
            # Only final states: a lease (``sending``) is for a mail still in flight.
            if state is None or not str(state).startswith(("sent", "dead")):
                continue
            entries.append({"key": str(key), "state": str(state), "ttl_ms": int(ttl)})
    path.write_text(json.dumps(entries) + "\n")
    return {"file": path.name, "entries": len(entries), "sha256": sha256(path)}


@contextmanager
def stopped(data_dir: Path) -> Iterator[None]:
    """Hold ``up``'s lock on the data dir: refused while an ``up`` runs, and none starts."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "up.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"{data_dir} is in use by a running taskledger up: stop it before a restore"
            ) from None
        yield


def restore(settings: Settings, source: Path) -> Manifest:
    """Replace a stopped data dir's event stores with a backup's; drop read models and sessions."""
    manifest = Manifest.read(source)
    for store in manifest.stores:
        if sha256(source / store.file) != store.sha256:
            raise BackupError(f"{source / store.file} does not match its checksum in the manifest")
    ledger = manifest.mail_ledger
    if ledger is not None and sha256(source / ledger["file"]) != ledger["sha256"]:
        raise BackupError(f"{source / ledger['file']} does not match its checksum")
    data_dir = settings.data_dir.resolve()
    with stopped(data_dir):
        targets = {Path(path).name: Path(path) for path in _store_paths(settings)}
        for path in targets.values():
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
        for store in manifest.stores:
            target = targets.get(store.file, data_dir / store.file)
            shutil.copyfile(source / store.file, target)
        # Read models, checkpoints, caches and sessions: rebuilt from the logs, or gone.
        for name in ENGINE_DIRS:
            shutil.rmtree(data_dir / name, ignore_errors=True)
        if ledger is not None:
            _load_mail_ledger(settings, data_dir, source / ledger["file"])
    return manifest


def _store_paths(settings: Settings) -> list[str]:
    env = event_store_env(settings)
    if env["PERSISTENCE_MODULE"] != "eventsourcing.sqlite":
        raise BackupError(
            "TASKLEDGER_EVENT_STORE_URL is PostgreSQL: restore it with PostgreSQL's tools "
            "(README, Backup and restore)"
        )
    return [env["SQLITE_DBNAME"], *(env[f"{n.upper()}_SQLITE_DBNAME"] for n in APPLICATIONS)]


def _load_mail_ledger(settings: Settings, data_dir: Path, path: Path) -> None:
    """Into the embedded Redis of the data dir, started for the purpose and stopped again."""
    import redis

    from ops.engines import embedded_redis, free_port

    entries = json.loads(path.read_text())
    if not entries:
        return
    port = free_port()
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    daemon = embedded_redis(data_dir / "redis", port, log_dir=logs)
    daemon.spawn()
    try:
        daemon.wait_ready()
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        with closing(client), client.pipeline(transaction=False) as pipe:
            for entry in entries:
                ttl = entry["ttl_ms"]
                pipe.set(entry["key"], entry["state"], px=ttl if ttl > 0 else None)
            pipe.execute()
    finally:
        daemon.terminate()
        daemon.stop()
