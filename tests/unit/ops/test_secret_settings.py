"""The server secret: long enough, from the environment or a key file, generated only once."""

from __future__ import annotations

import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ops.settings import InvalidSetting, Settings, load_settings

GOOD = "k" * 32


def test_a_short_secret_stops_start_up_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLEDGER_JWT_SECRET", "x" * 31)
    with pytest.raises(InvalidSetting, match=r"TASKLEDGER_JWT_SECRET: .*32 bytes"):
        load_settings()


def test_an_empty_secret_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLEDGER_JWT_SECRET", "")
    with pytest.raises(InvalidSetting, match="TASKLEDGER_JWT_SECRET"):
        load_settings()


def test_a_secret_of_32_bytes_is_the_secret() -> None:
    assert Settings(jwt_secret=GOOD).secret() == GOOD.encode()


def test_a_key_file_holds_the_secret(tmp_path: Path) -> None:
    key = tmp_path / "jwt.key"
    key.write_text(GOOD + "\n")
    settings = Settings(data_dir=tmp_path / "data", jwt_secret_file=key)
    assert settings.secret() == GOOD.encode()
    assert settings.shared_secret() == GOOD.encode()
    assert not (tmp_path / "data" / "secret.key").exists()


@pytest.mark.parametrize("content", [None, "short\n", "\n"])
def test_a_missing_or_short_key_file_stops_start_up_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None
) -> None:
    key = tmp_path / "jwt.key"
    if content is not None:
        key.write_text(content)
    monkeypatch.setenv("TASKLEDGER_JWT_SECRET_FILE", str(key))
    with pytest.raises(InvalidSetting, match="TASKLEDGER_JWT_SECRET_FILE"):
        load_settings()


def test_a_secret_and_a_key_file_together_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "jwt.key"
    key.write_text(GOOD)
    monkeypatch.setenv("TASKLEDGER_JWT_SECRET", GOOD)
    monkeypatch.setenv("TASKLEDGER_JWT_SECRET_FILE", str(key))
    with pytest.raises(InvalidSetting, match="not both"):
        load_settings()


def test_a_shared_secret_is_never_generated(tmp_path: Path) -> None:
    with pytest.raises(InvalidSetting, match="TASKLEDGER_JWT_SECRET: not set"):
        Settings(data_dir=tmp_path).shared_secret()
    assert not (tmp_path / "secret.key").exists()


def test_the_generated_secret_is_private_and_the_same_for_every_racer(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    start = threading.Barrier(16)

    def racer() -> bytes:
        start.wait()
        return settings.secret()

    with ThreadPoolExecutor(16) as pool:
        secrets = set(pool.map(lambda _: racer(), range(16)))
    assert len(secrets) == 1
    (secret,) = secrets
    assert len(secret) >= 32
    key = tmp_path / "data" / "secret.key"
    assert key.read_bytes().strip() == secret
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in key.parent.iterdir()] == ["secret.key"]  # no draft left behind


def test_an_empty_key_file_is_waited_for_not_used(tmp_path: Path) -> None:
    # Another process created the file and is about to write it.
    key = tmp_path / "secret.key"
    key.touch(mode=0o600)

    def writer() -> None:
        time.sleep(0.2)
        key.write_text(GOOD)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert Settings(data_dir=tmp_path).secret() == GOOD.encode()
    finally:
        thread.join()
