"""After a scripted session, neither the event store, nor Redis, nor the logs hold a password,
a usable reset token, a token or a secret. Events are forever: this is checked on raw bytes."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from redis import Redis

from commands.auth.tokens import signing_key
from domain.reset_tokens import reset_key
from ops.bootstrap import build_write_side
from ops.settings import Settings
from tests.fixtures.users import log_in, new_email, register, request_reset

FIRST = "first-Pa55word-of-ann"
SECOND = "second-Pa55word-of-ann"
THIRD = "third-Pa55word-never-set"
GUESS = "wrong-Gue55-by-mallory"


def _forms(secret: bytes) -> list[bytes]:
    """A secret as it could leak: raw, hex, base64 (either alphabet, unpadded)."""
    return [
        secret,
        secret.hex().encode(),
        base64.b64encode(secret).rstrip(b"="),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


def _store_bytes(settings: Settings) -> bytes:
    """Every stored event's raw state and topic, from both applications' logs."""
    write_side = build_write_side(settings)
    try:
        chunks = []
        for app in (write_side.identity, write_side.tasks):
            for notification in app.recorder.select_notifications(start=1, limit=100_000):
                chunks += [notification.topic.encode(), notification.state]
    finally:
        write_side.close()
    return b"\n".join(chunks)


def _sqlite_files(settings: Settings) -> bytes:
    """The SQLite files themselves (one per application, and their journals): a page the
    library no longer reads is still on disk."""
    url = urlsplit(str(settings.event_store_url))
    if url.scheme != "sqlite":
        return b""
    path = Path(url.path)
    return b"\n".join(p.read_bytes() for p in sorted(path.parent.glob(path.stem + "*")))


def _redis_bytes(settings: Settings) -> bytes:
    client = Redis.from_url(str(settings.redis_url))
    chunks = []
    try:
        for key in client.scan_iter(match=settings.redis_prefix + "*"):
            chunks.append(key)
            kind = client.type(key)
            if kind == b"string":
                chunks.append(client.get(key) or b"")
            elif kind == b"hash":
                for field, value in client.hgetall(key).items():
                    chunks += [field, value]
            elif kind == b"set":
                chunks += list(client.smembers(key))
    finally:
        client.close()
    return b"\n".join(chunks)


def test_a_session_leaves_no_secret_in_the_store_redis_or_logs(
    api: httpx.Client,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    user_id, email = register(api, password=FIRST, display_name="Ann")
    assert api.post("/v1/auth/login", json={"email": email, "password": GUESS}).status_code == 401
    assert (
        api.post("/v1/auth/token", data={"username": new_email(), "password": GUESS}).status_code
        == 401
    )
    first = log_in(api, email, FIRST)
    refreshed = api.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200
    second = refreshed.json()
    headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert api.post("/v1/tasks", json={"title": "buy milk"}, headers=headers).status_code == 201
    assert api.post("/v1/auth/forgot-password", json={"email": new_email()}).status_code == 202
    used = request_reset(api, settings, email, user_id)
    assert (
        api.post(
            "/v1/auth/reset-password", json={"token": used, "new_password": SECOND}
        ).status_code
        == 204
    )
    # Requested, never used: still a working token the moment the scan runs.
    unused = request_reset(api, settings, email, user_id)
    assert (
        api.post("/v1/auth/reset-password", json={"token": used, "new_password": THIRD}).status_code
        == 400
    )
    third = log_in(api, email, SECOND)
    assert (
        api.post(
            "/v1/auth/logout", headers={"Authorization": f"Bearer {third['access_token']}"}
        ).status_code
        == 204
    )

    secret = settings.secret()
    forbidden: dict[str, list[bytes]] = {
        "first password": [FIRST.encode()],
        "second password": [SECOND.encode()],
        "refused password": [THIRD.encode()],
        "guessed password": [GUESS.encode()],
        "used reset token": [used.encode(), used.split(".")[1].encode()],
        "unused reset token": [unused.encode(), unused.split(".")[1].encode()],
        "server secret": _forms(secret),
        "jwt signing key": _forms(signing_key(secret)),
        "reset key": _forms(reset_key(secret)),
        "tokens": [
            pair[kind].encode()
            for pair in (first, second, third)
            for kind in ("access_token", "refresh_token")
        ],
    }

    store, redis, files = _store_bytes(settings), _redis_bytes(settings), _sqlite_files(settings)
    logs = "\n".join(
        [record.getMessage() + repr(record.__dict__) for record in caplog.records]
        + list(capfd.readouterr())
    ).encode()

    # The scans read real data: what should be there is there.
    assert email.encode() in store
    assert b"$argon2id$" in store
    assert b"PasswordResetRequested" in store
    assert b"buy milk" in store
    if settings.event_store_url and settings.event_store_url.startswith("sqlite"):
        assert email.encode() in files
        assert b"buy milk" in files
    assert redis, "Redis holds no session state under the prefix"
    assert any(record.name == "taskledger.auth" for record in caplog.records)

    leaks = [
        f"{what} in {where}"
        for what, forms in forbidden.items()
        for where, data in (
            ("event store", store),
            ("sqlite files", files),
            ("redis", redis),
            ("logs", logs),
        )
        if any(form in data for form in forms)
    ]
    assert leaks == []
