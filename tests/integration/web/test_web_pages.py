"""The web client's files, as a browser gets them from a real API server: the page, its script
and its styles, each with the security headers; the API's own routes unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.api import Server, make_settings

PAGES = ["/", "/reset-password", "/assets/app.js", "/assets/app.css"]


@pytest.fixture
def client(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[httpx.Client]:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'events.sqlite'}", redis_url, redis_prefix
    )
    with Server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("path", PAGES)
def test_every_file_of_the_client_carries_the_security_headers(
    client: httpx.Client, path: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    csp = {
        directive.split()[0]: directive.split()[1:]
        for directive in answer.headers["Content-Security-Policy"].split("; ")
    }
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no other origin
    assert csp["frame-ancestors"] == ["'none'"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert "x-request-id" in answer.headers


def test_the_page_loads_only_its_own_script_and_styles_and_runs_nothing_inline(
    client: httpx.Client,
) -> None:
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<script type="module" src="/assets/app.js"></script>' in html
    assert html.count("<script") == 1  # so none inline, which the CSP would refuse anyway
    assert " on" + "click=" not in html
    assert "style=" not in html
    assert client.get("/reset-password").text == html
    assert client.get("/assets/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/assets/app.css").headers["content-type"].startswith("text/css")


def test_the_client_stays_out_of_the_openapi_document_and_the_api_answers_as_before(
    client: httpx.Client,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not set(paths) & {"/", "/reset-password", "/assets/app.js", "/assets/app.css"}
    missing = client.get("/assets/nothing.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/tasks").status_code == 401
