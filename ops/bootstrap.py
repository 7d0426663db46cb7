"""The composition root: the one place that builds clients, applications and adapters.

Nothing connects at import time; every process entry point calls a builder here with its
Settings, and the tests call the same builders with theirs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from commands.auth.accounts import Accounts
from commands.auth.devices import DeviceCookies, device_key
from commands.auth.passwords import Argon2Hasher
from commands.auth.rate_limits import AuthLimits
from commands.auth.redis import RedisRateLimiter, RedisSessionStore
from commands.auth.session_cache import CachingSessionStore
from commands.auth.sessions import Sessions
from commands.auth.tokens import JwtTokens, signing_key
from commands.identity import Identity
from commands.tasks import Tasks
from domain.reset_tokens import reset_key
from ops.settings import POSTGRES_URL_PARAMETERS, InvalidSetting, Settings


@dataclass(frozen=True, slots=True)
class WriteSide:
    identity: Identity
    tasks: Tasks

    def close(self) -> None:
        self.identity.close()
        self.tasks.close()


APPLICATIONS = ("Identity", "Tasks")


def event_store_url(settings: Settings) -> str:
    if settings.event_store_url:
        return settings.event_store_url
    return f"sqlite:///{(settings.data_dir / 'events.sqlite').resolve()}"


# Tables are created by `taskledger migrate` alone (ops.schema), never by a serving process.
NO_SCHEMA_CHANGES = {"CREATE_TABLE": "n"}


def event_store_env(settings: Settings) -> dict[str, str]:
    """Translate TASKLEDGER_EVENT_STORE_URL into the eventsourcing library's environment."""
    url = urlsplit(event_store_url(settings))
    if url.scheme == "sqlite":
        path = Path(unquote(url.path))
        path.parent.mkdir(parents=True, exist_ok=True)
        # The SQLite recorder names its table "stored_events" whatever the application, so
        # each application gets a file of its own beside the named one (events.tasks.sqlite):
        # its own notification log, and no write lock shared between them.
        # eventsourcing reads "<APP NAME>_SQLITE_DBNAME" before "SQLITE_DBNAME".
        per_app = {
            f"{name.upper()}_SQLITE_DBNAME": str(path.with_suffix(f".{name.lower()}{path.suffix}"))
            for name in APPLICATIONS
        }
        return {
            **NO_SCHEMA_CHANGES,
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": "10",
            **per_app,
        }
    # sslmode and the certificates: eventsourcing passes no such options to psycopg, so they go
    # where libpq reads them, the process environment (the URL was checked by Settings).
    for name, values in parse_qs(url.query).items():
        os.environ[POSTGRES_URL_PARAMETERS[name]] = values[-1]
    return {
        **NO_SCHEMA_CHANGES,
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.postgres_max_overflow),
        "POSTGRES_CONNECT_TIMEOUT": str(settings.postgres_connect_timeout),
        "POSTGRES_CONN_MAX_AGE": "600",
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_LOCK_TIMEOUT": "5",
    }


# A task edited often has a long history, replayed in full on every command. The cache keeps
# the last state of recently used tasks and fast-forwards it from the store on each read (only
# the events after it), so every process still sees every other's writes.
TASK_CACHE = {"AGGREGATE_CACHE_MAXSIZE": "10000", "AGGREGATE_CACHE_FASTFORWARD": "y"}


def build_write_side(settings: Settings) -> WriteSide:
    env = event_store_env(settings)
    batch = settings.group_commit_max if settings.group_commit else 1
    return WriteSide(
        identity=Identity(env=env, group_commit_max=batch),
        tasks=Tasks(env=env | TASK_CACHE, group_commit_max=batch),
    )


@dataclass(frozen=True, slots=True)
class Auth:
    accounts: Accounts
    # Also the authenticator every Bearer route asks: ``user_for(access_token)``.
    sessions: Sessions


def build_auth(settings: Settings, identity: Identity, redis: Redis) -> Auth:
    """Sessions and rate limits in Redis under the prefix; every key derived from the secret."""
    secret = settings.secret()
    tokens = JwtTokens(
        signing_key(secret),
        algorithm=settings.jwt_algorithm,
        access_ttl=settings.access_token_ttl,
        refresh_ttl=settings.refresh_token_ttl,
    )
    # Each Bearer request's "is the session still open?" is answered here for half a second
    # after Redis last said so: not a round trip per command; a revocation acts within 0.5 s.
    sessions = Sessions(
        tokens,
        CachingSessionStore(RedisSessionStore(redis, settings.redis_prefix)),
        idle_timeout=settings.session_idle_timeout,
        lifetime=settings.session_lifetime,
    )
    accounts = Accounts(
        identity=identity,
        hasher=Argon2Hasher(
            time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_cost
        ),
        sessions=sessions,
        limiter=RedisRateLimiter(redis, settings.redis_prefix),
        limits=AuthLimits(
            login_per_account_client=settings.login_max_failures,
            login_per_client=settings.login_max_failures_per_client,
            login_window=settings.login_failure_window,
            login_account_free=settings.login_account_slowdown_after,
            login_account_delay_cap=settings.login_account_delay_max,
            forgot_per_email=settings.forgot_password_max,
            forgot_per_client=settings.forgot_password_max_per_client,
            forgot_window=settings.forgot_password_window,
            register_per_client=settings.register_max_per_client,
            register_window=settings.register_window,
        ),
        devices=DeviceCookies(device_key(secret), settings.login_device_ttl),
        reset_key=reset_key(secret),
        reset_ttl=timedelta(seconds=settings.reset_token_ttl),
    )
    return Auth(accounts, sessions)


# Every Redis client has socket timeouts, so a hung Redis costs a bounded wait, never a worker.
# The API's: sub-second and no retries (a read falls back to MongoDB, a command answers 503).
# Workers' (projector, mailer, CLI): longer, with retries; they are not answering anyone.
API_REDIS_TIMEOUT = 0.5
WORKER_REDIS_TIMEOUT = 5.0
WORKER_REDIS_RETRIES = 3


def redis_url(settings: Settings) -> str:
    if not settings.redis_url:
        # `taskledger up` starts an embedded Redis and sets the URL; other processes must be told.
        raise InvalidSetting(
            "invalid setting TASKLEDGER_REDIS_URL: not set; sessions, rate limits, caches and "
            "mail streams live in Redis"
        )
    return settings.redis_url


def redis_client(
    settings: Settings,
    *,
    timeout: float = WORKER_REDIS_TIMEOUT,
    retries: int = WORKER_REDIS_RETRIES,
) -> Redis:
    """A redis.asyncio client (not connected yet) on TASKLEDGER_REDIS_URL."""
    return Redis.from_url(
        redis_url(settings),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
    )
