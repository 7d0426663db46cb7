"""After a scripted session over real HTTP, the scraped /metrics holds exactly what happened.

Counters live in the process-wide registry and other tests move them too, so each expectation
is a difference between a scrape before and a scrape after the session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.api import Server, make_settings

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: httpx.Client) -> Series:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def delta(before: Series, after: Series, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def api(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[httpx.Client]:
    # SQLite only: what is counted does not depend on the event store, and this keeps CI short.
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'events.sqlite'}", redis_url, redis_prefix
    )
    with Server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_a_scripted_session_shows_up_in_metrics(api: httpx.Client) -> None:
    before = scrape(api)
    email = f"m{uuid.uuid4().hex[:10]}@example.com"
    credentials = {"email": email, "password": "pw-123456789"}

    assert api.post("/v1/auth/register", json=credentials).status_code == 201
    assert api.post("/v1/auth/register", json=credentials).status_code == 409
    wrong = {**credentials, "password": "not-the-password"}
    assert api.post("/v1/auth/login", json=wrong).status_code == 401
    login = api.post("/v1/auth/login", json=credentials)
    assert login.status_code == 200
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    ids = []
    for title in ("first", "second"):
        created = api.post("/v1/tasks", json={"title": title}, headers=auth)
        assert created.status_code == 201
        ids.append(created.json()["id"])
    patched = api.patch(f"/v1/tasks/{ids[0]}", json={"title": "renamed"}, headers=auth)
    assert patched.status_code == 200
    stale = api.patch(
        f"/v1/tasks/{ids[0]}", json={"status": "done"}, headers={**auth, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert api.patch(
        f"/v1/tasks/{uuid.uuid4()}", json={"title": "x"}, headers=auth
    ).status_code == (404)

    assert api.get("/health/ready").status_code == 200
    after = scrape(api)
    commands = "taskledger_commands_total"
    assert delta(before, after, commands, command="register", outcome="ok") == 1
    assert delta(before, after, commands, command="register", outcome="EmailTaken") == 1
    assert delta(before, after, commands, command="login", outcome="ok") == 1
    assert delta(before, after, commands, command="login", outcome="InvalidCredentials") == 1
    assert delta(before, after, commands, command="create_task", outcome="ok") == 2
    assert delta(before, after, commands, command="update_task", outcome="ok") == 1
    assert delta(before, after, commands, command="update_task", outcome="VersionMismatch") == 1
    assert delta(before, after, commands, command="update_task", outcome="TaskNotFound") == 1

    events = "taskledger_events_appended_total"
    assert delta(before, after, events, application="Identity", type="User.Registered") == 1
    assert delta(before, after, events, application="Tasks", type="Task.Created") == 2
    assert delta(before, after, events, application="Tasks", type="Task.Edited") == 1
    assert delta(before, after, events, application="Tasks", type="Task.StatusChanged") == 0

    requests = "taskledger_http_request_duration_seconds_count"
    route = "/v1/tasks/{task_id}"
    assert delta(before, after, requests, method="POST", route="/v1/tasks", status="201") == 2
    assert delta(before, after, requests, method="PATCH", route=route, status="200") == 1
    assert delta(before, after, requests, method="PATCH", route=route, status="412") == 1
    assert delta(before, after, requests, method="PATCH", route=route, status="404") == 1
    register = "/v1/auth/register"
    assert delta(before, after, requests, method="POST", route=register, status="201") == 1
    assert delta(before, after, requests, method="POST", route=register, status="409") == 1

    assert after[("taskledger_dependency_ready", frozenset({("dependency", "redis")}))] == 1
    assert after[("taskledger_dependency_ready", frozenset({("dependency", "event_store")}))] == 1


def test_routes_are_labelled_by_template_never_by_raw_path(api: httpx.Client) -> None:
    task_id = str(uuid.uuid4())
    api.patch(f"/v1/tasks/{task_id}", json={"title": "x"})
    api.get(f"/no/such/{task_id}")
    api.request("PROPFIND", f"/v1/tasks/{task_id}")
    text = api.get("/metrics").text
    assert task_id not in text
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(text)
        if family.name == "taskledger_http_request_duration_seconds"
        for sample in family.samples
    }
    assert "/v1/tasks/{task_id}" in routes
    assert "unmatched" in routes
    assert all(route.startswith("/") or route == "unmatched" for route in routes)
    methods = {
        sample.labels["method"]
        for family in text_string_to_metric_families(text)
        if family.name == "taskledger_http_request_duration_seconds"
        for sample in family.samples
    }
    assert "OTHER" in methods
    assert "PROPFIND" not in methods
