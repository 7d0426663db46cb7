"""Every setting of every process, read once from the environment (prefix TASKLEDGER_)."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumers.retry import RetryPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKLEDGER_", extra="ignore")

    data_dir: Path = Path(".taskledger")
    # Unset engine URLs mean the embedded default (see ops/engines.py).
    event_store_url: str | None = None
    mongo_url: str | None = None
    redis_url: str | None = None
    smtp_url: str | None = None
    # Keys, streams and consumer groups live under this prefix, so sessions can share a server.
    redis_prefix: str = "tl:"

    # Every API and mailer replica must share the secret: the value, or a file holding it.
    jwt_secret: SecretStr | None = None
    jwt_secret_file: Path | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_ttl: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl: int = Field(default=14 * 86_400, ge=60)
    # A session ends when unused (not refreshed) for session_idle_timeout seconds, and in any
    # case session_lifetime seconds after its login: no refresh reaches past that (ASVS 3.3).
    session_idle_timeout: int = Field(default=7 * 86_400, ge=1)
    session_lifetime: int = Field(default=30 * 86_400, ge=1)
    reset_token_ttl: int = Field(default=1800, ge=60, le=86_400)
    reset_url_base: str = "http://127.0.0.1:8000/reset-password"
    mail_from: str = "taskledger <no-reply@taskledger.localhost>"

    # Login failures (README, Security): refused past these per (account, client address) and
    # per client address; at the whole account only slowed, past login_account_slowdown_after,
    # by a delay doubling per failure up to login_account_delay_max seconds. A device cookie
    # (kept login_device_ttl seconds) exempts the owner's usual client from strangers' counts.
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_client: int = Field(default=30, ge=1)
    login_failure_window: int = Field(default=900, ge=1)
    login_account_slowdown_after: int = Field(default=100, ge=1)
    login_account_delay_max: int = Field(default=900, ge=1, le=86_400)
    login_device_ttl: int = Field(default=180 * 86_400, ge=60)
    forgot_password_max: int = Field(default=3, ge=1)
    forgot_password_max_per_client: int = Field(default=20, ge=1)
    forgot_password_window: int = Field(default=3600, ge=1)
    # Each registration costs an argon2 hash and an account: a client address may make so many.
    register_max_per_client: int = Field(default=20, ge=1)
    register_window: int = Field(default=3600, ge=1)

    # Mail (relay + mailer). The de-dup memory must outlive both the retry horizon and the
    # relay's window, so that no re-publication or redelivery can ever send a mail twice.
    mail_max_attempts: int = Field(default=8, ge=1, le=100)
    mail_retry_base: float = Field(default=2.0, gt=0)  # seconds before the first retry
    mail_retry_max: float = Field(default=300.0, gt=0)  # cap of one back-off step
    mail_send_timeout: float = Field(default=30.0, gt=0)  # one whole SMTP conversation
    mail_reclaim_idle: float = Field(default=5.0, gt=0)  # pending so long: any mailer may claim
    mail_concurrency: int = Field(default=8, ge=1, le=256)  # mails in flight per mailer process
    mail_relay_window: int = Field(default=86_400, ge=60)  # older events are never (re)published
    mail_dedup_ttl: int = Field(default=7 * 86_400, ge=60)

    read_your_writes_timeout: float = Field(default=2.0, ge=0, le=30)

    # Projections: events per read while catching up; the idle tail's poll back-off ceiling
    # (wake-ups from LISTEN/NOTIFY or the SQLite watch come sooner); how long a replaced
    # generation outlives a blue/green switch (readers cache the alias for 1 s).
    projection_batch_size: int = Field(default=1000, ge=1, le=50_000)
    projection_poll_max: float = Field(default=0.5, gt=0, le=60)
    projection_rebuild_grace: float = Field(default=10.0, ge=2, le=3600)

    # argon2id cost; the defaults are argon2-cffi's RFC 9106 "low memory" profile.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost: int = Field(default=65_536, ge=8)

    # Write side: commands that arrive while a transaction runs share the next one (group
    # commit), at most this many to a transaction; off, each command has its own.
    group_commit: bool = True
    group_commit_max: int = Field(default=256, ge=1, le=10_000)

    # Per application (Identity, Tasks, the Tasks audit reader): eventsourcing opens pool_size
    # connections at start. Small, so replicas fit PostgreSQL's max_connections (README).
    postgres_pool_size: int = Field(default=2, ge=1)
    postgres_max_overflow: int = Field(default=4, ge=0)
    # Longest wait for an event-store connection, seconds; operator commands use 5 unless set.
    postgres_connect_timeout: int = Field(default=30, ge=1, le=600)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    # Spans from the request's traceparent through the workers; needs the optional
    # opentelemetry-sdk (the `otel` extra). Exporters read the standard OTEL_* variables.
    otel_enabled: bool = False

    @field_validator("event_store_url")
    @classmethod
    def _event_store_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlsplit(value)
        if url.scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
        if url.scheme == "sqlite":
            if url.query:
                raise ValueError("a sqlite:/// URL takes no query parameters")
            return value
        try:
            port = url.port  # None when the URL names none: 5432
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("the port must be a number from 1 to 65535")
        parameters = parse_qs(url.query, keep_blank_values=True)
        unknown = sorted(set(parameters) - set(POSTGRES_URL_PARAMETERS))
        if unknown:
            known = ", ".join(POSTGRES_URL_PARAMETERS)
            raise ValueError(f"unknown query parameter {unknown[0]!r} (known: {known})")
        if parameters.get("sslmode", ["prefer"])[-1] not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
        return value

    @field_validator("mongo_url")
    @classmethod
    def _mongo_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"mongodb", "mongodb+srv"}:
            raise ValueError("must be a mongodb:// URL naming the database in its path")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be redis://, rediss:// or unix://")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"smtp", "smtps"}:
            raise ValueError("must be smtp://[user:pass@]host:port or smtps://…")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_secret(value.get_secret_value().encode())
        return value

    @field_validator("jwt_secret_file")
    @classmethod
    def _secret_file_readable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if info.data.get("jwt_secret") is not None:
            raise ValueError("set TASKLEDGER_JWT_SECRET or TASKLEDGER_JWT_SECRET_FILE, not both")
        try:
            _check_secret(_read_secret(value))
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        return value

    @field_validator("mail_dedup_ttl")
    @classmethod
    def _dedup_outlives_retries(cls, value: int, info: ValidationInfo) -> int:
        names = ("mail_retry_base", "mail_retry_max", "mail_max_attempts", "mail_relay_window")
        if any(name not in info.data for name in names):
            return value  # an earlier field failed; that error is the one to report
        base, cap, attempts, window = (info.data[name] for name in names)
        horizon = RetryPolicy(max_attempts=attempts, base=base, cap=cap).horizon() + window
        if value <= horizon:
            raise ValueError(f"must exceed the retry horizon plus relay window ({horizon:.0f}s)")
        return value

    def secret(self) -> bytes:
        """The server secret: configured, or generated once and kept in the data dir."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value().encode()
        if self.jwt_secret_file is not None:
            return _read_secret(self.jwt_secret_file)
        return _generated_secret(self.data_dir / "secret.key")

    def shared_secret(self) -> bytes:
        """The configured secret, never a generated one: what ``serve api|mailer`` require, as
        a secret generated per replica would make each one refuse the others' tokens."""
        if self.jwt_secret is None and self.jwt_secret_file is None:
            raise InvalidSetting(
                "invalid setting TASKLEDGER_JWT_SECRET: not set; every API and mailer replica "
                "needs the same secret (or set TASKLEDGER_JWT_SECRET_FILE)"
            )
        return self.secret()


# The routers an API process serves (``serve api --routes``), so auth and tasks scale apart.
Routes = Literal["auth", "tasks", "all"]

# Query parameters a postgresql:// event-store URL may carry, and the libpq environment variable
# each becomes (eventsourcing has no TLS options; libpq reads these from the process environment).
POSTGRES_URL_PARAMETERS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
}
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
MIN_SECRET_BYTES = 32


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -base64 48`)"
        )


def _read_secret(path: Path) -> bytes:
    return path.read_bytes().strip()


def _generated_secret(path: Path) -> bytes:
    """Made once, atomically: the key is written whole to a private temporary file, then
    linked into place, which fails if another process got there first; everyone reads the
    one that won, never a half-written or empty file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(48))
                file.flush()
                os.fsync(file.fileno())
            # Fails if another process made it first: then theirs is the one.
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
        finally:
            draft.unlink()
    # An empty file is a writer of an older version between create and write: wait for it.
    for _ in range(40):
        secret = _read_secret(path)
        if secret:
            return secret
        time.sleep(0.05)
    raise InvalidSetting(f"invalid setting TASKLEDGER_JWT_SECRET: not set, and {path} is empty")


class InvalidSetting(Exception):
    """One line naming the setting that stops start-up."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "TASKLEDGER_" + str(error["loc"][0]).upper() if error["loc"] else "TASKLEDGER_?"
        raise InvalidSetting(f"invalid setting {name}: {error['msg']}") from None
