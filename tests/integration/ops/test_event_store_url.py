"""TASKLEDGER_EVENT_STORE_URL: checked whole at start-up, and its TLS options are obeyed."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from commands.identity import Identity
from ops.bootstrap import event_store_env
from ops.settings import InvalidSetting, Settings, load_settings


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://postgres@127.0.0.1:99999/db", "port"),
        ("postgresql://postgres@127.0.0.1:port/db", "port"),
        ("postgresql://postgres@127.0.0.1:5432/db?ssl_mode=require", "unknown query parameter"),
        ("postgresql://postgres@127.0.0.1:5432/db?sslmode=sometimes", "sslmode must be one of"),
        ("sqlite:///tmp/events.sqlite?mode=ro", "no query parameters"),
    ],
)
def test_a_bad_url_stops_start_up_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, url: str, reason: str
) -> None:
    monkeypatch.setenv("TASKLEDGER_EVENT_STORE_URL", url)
    with pytest.raises(InvalidSetting, match="TASKLEDGER_EVENT_STORE_URL") as stopped:
        load_settings()
    assert reason in str(stopped.value)


def server_ssl(url: str) -> bool:
    with psycopg.connect(url, sslmode="disable", autocommit=True) as conn:
        row = conn.execute("SHOW ssl").fetchone()
    assert row is not None
    return bool(row[0] == "on")


def test_sslmode_in_the_url_reaches_the_event_store_connection(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSSLMODE", "prefer")  # restored afterwards: the URL overrides it
    settings = Settings(data_dir=tmp_path, event_store_url=postgres_url + "?sslmode=require")
    env = {**event_store_env(settings), "POSTGRES_CONNECT_TIMEOUT": "3"}
    assert os.environ["PGSSLMODE"] == "require"
    if server_ssl(postgres_url):
        app = Identity(env=env)
        try:
            with app.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
                cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                row = cursor.fetchone()
            assert row is not None
            assert row["ssl"] is True
        finally:
            app.close()
    else:
        # The server speaks no TLS: a connection that must use it cannot be made...
        with pytest.raises(OperationalError):
            Identity(env=env)
        # ...while the same URL without it connects.
        plain = settings.model_copy(update={"event_store_url": postgres_url + "?sslmode=disable"})
        Identity(env=event_store_env(plain)).close()
