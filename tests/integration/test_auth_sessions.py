"""A user's sessions over real HTTP and the real Redis: list them, end one, and their
absolute lifetime."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from ops.api import build_api
from ops.settings import Settings
from tests.fixtures.api import Server, make_settings
from tests.fixtures.users import PASSWORD, bearer, register, sign_in

PROBLEM = "application/problem+json"


def _log_in(api: httpx.Client, email: str, agent: str) -> dict[str, Any]:
    response = api.post(
        "/v1/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def _sessions(api: httpx.Client, access_token: str) -> list[dict[str, Any]]:
    response = api.get("/v1/users/me/sessions", headers=bearer(access_token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_the_sessions_are_listed_with_the_callers_marked(api: httpx.Client) -> None:
    _, email = register(api)
    laptop = _log_in(api, email, "laptop/1.0")
    phone = _log_in(api, email, "phone/2.0")
    items = _sessions(api, phone["access_token"])
    assert len(items) == 2
    assert {item["user_agent"] for item in items} == {"laptop/1.0", "phone/2.0"}
    current = [item for item in items if item["current"]]
    assert [item["user_agent"] for item in current] == ["phone/2.0"]
    for item in items:
        UUID(item["id"])
        assert item["client"] == "127.0.0.1"
        for field in ("created_at", "last_used_at"):
            at = datetime.fromisoformat(item[field])
            assert at.utcoffset() == timedelta(0)
            assert abs(datetime.now(UTC) - at) < timedelta(minutes=5)
    # A refresh is a use; the list says so, and the laptop sees its own session as current.
    api.post("/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert [item["current"] for item in _sessions(api, laptop["access_token"])].count(True) == 1


def test_ending_a_session_stops_its_tokens_at_once(api: httpx.Client) -> None:
    _, email = register(api)
    lost = _log_in(api, email, "lost phone")
    mine = _log_in(api, email, "laptop")
    lost_id = next(i["id"] for i in _sessions(api, mine["access_token"]) if not i["current"])
    ended = api.delete(f"/v1/users/me/sessions/{lost_id}", headers=bearer(mine["access_token"]))
    assert ended.status_code == 204
    assert api.get("/v1/users/me", headers=bearer(lost["access_token"])).status_code == 401
    refreshed = api.post("/v1/auth/refresh", json={"refresh_token": lost["refresh_token"]})
    assert refreshed.status_code == 401
    assert [i["user_agent"] for i in _sessions(api, mine["access_token"])] == ["laptop"]
    # Ended once: a second time it is not found.
    again = api.delete(f"/v1/users/me/sessions/{lost_id}", headers=bearer(mine["access_token"]))
    assert again.status_code == 404


def test_another_users_session_is_not_found_and_not_ended(api: httpx.Client) -> None:
    ann, bob = sign_in(api), sign_in(api)
    bobs = _sessions(api, bob.access_token)[0]["id"]
    for session_id in (bobs, str(uuid4())):
        response = api.delete(f"/v1/users/me/sessions/{session_id}", headers=ann.headers)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith(PROBLEM)
    assert api.get("/v1/users/me", headers=bob.headers).status_code == 200


def test_the_session_routes_need_a_valid_bearer(api: httpx.Client) -> None:
    user = sign_in(api)
    session_id = _sessions(api, user.access_token)[0]["id"]
    for headers in ({}, bearer("not-a-token"), bearer(user.refresh_token)):
        for response in (
            api.get("/v1/users/me/sessions", headers=headers),
            api.delete(f"/v1/users/me/sessions/{session_id}", headers=headers),
        ):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"].startswith(PROBLEM)
    assert api.get("/v1/users/me", headers=user.headers).status_code == 200


@pytest.fixture
def short_lived(tmp_path: Path, settings: Settings) -> Iterator[httpx.Client]:
    changed = make_settings(
        tmp_path,
        settings.event_store_url,
        str(settings.redis_url),
        settings.redis_prefix,
        session_lifetime=3,
    )
    with Server(changed) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_refreshing_never_extends_a_session_past_its_lifetime(short_lived: httpx.Client) -> None:
    api = short_lived
    _, email = register(api)
    started = time.monotonic()
    tokens = _log_in(api, email, "agent")
    assert tokens["expires_in"] <= 3
    while time.monotonic() - started < 2:
        response = api.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert response.status_code == 200, response.text
        tokens = response.json()
        time.sleep(0.3)
    time.sleep(max(0.0, 3.5 - (time.monotonic() - started)))
    assert api.get("/v1/users/me", headers=bearer(tokens["access_token"])).status_code == 401
    late = api.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert late.status_code == 401


def test_the_session_routes_are_served_and_documented_with_auth(settings: Settings) -> None:
    auth: dict[str, Any] = build_api(settings, "auth").openapi()
    listing = auth["paths"]["/v1/users/me/sessions"]["get"]
    ending = auth["paths"]["/v1/users/me/sessions/{session_id}"]["delete"]
    assert listing["operationId"] == "listSessions"
    assert ending["operationId"] == "endSession"
    assert {"200", "401"} <= set(listing["responses"])
    assert {"204", "401", "404"} <= set(ending["responses"])
    schema = auth["components"]["schemas"]["SessionOut"]
    assert set(schema["required"]) == {
        "id",
        "created_at",
        "last_used_at",
        "client",
        "user_agent",
        "current",
    }
    tasks = build_api(settings, "tasks").openapi()["paths"]
    assert not any(path.startswith("/v1/users") for path in tasks)
