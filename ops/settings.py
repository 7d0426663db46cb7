"""Every setting of every process, read once from the environment (prefix TASKLEDGER_)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

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

    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_ttl: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl: int = Field(default=14 * 86_400, ge=60)
    reset_token_ttl: int = Field(default=1800, ge=60, le=86_400)
    reset_url_base: str = "http://127.0.0.1:8000/reset-password"
    mail_from: str = "taskledger <no-reply@taskledger.localhost>"

    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_client: int = Field(default=30, ge=1)
    login_failure_window: int = Field(default=900, ge=1)
    forgot_password_max: int = Field(default=3, ge=1)
    forgot_password_max_per_client: int = Field(default=20, ge=1)
    forgot_password_window: int = Field(default=3600, ge=1)

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

    postgres_pool_size: int = Field(default=10, ge=1)
    postgres_max_overflow: int = Field(default=30, ge=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    # Spans from the request's traceparent through the workers; needs the optional
    # opentelemetry-sdk (the `otel` extra). Exporters read the standard OTEL_* variables.
    otel_enabled: bool = False

    @field_validator("event_store_url")
    @classmethod
    def _event_store_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must be sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
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
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()


class InvalidSetting(Exception):
    """One line naming the setting that stops start-up."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "TASKLEDGER_" + str(error["loc"][0]).upper() if error["loc"] else "TASKLEDGER_?"
        raise InvalidSetting(f"invalid setting {name}: {error['msg']}") from None
