"""Brute force without lockout, over real HTTP and the real Redis: strangers hammering an
account from many addresses are refused and slowed, and the owner's usual client still gets in.

Distinct client addresses come from binding each client to its own loopback address
(127.0.0.0/8 all reaches the server on 127.0.0.1), so the server sees real peers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from commands.auth.devices import DEVICE_COOKIE
from ops.api import build_api
from ops.settings import Settings
from tests.fixtures.api import Server, make_settings
from tests.fixtures.users import PASSWORD, register

LIMITS = {
    "login_max_failures": 3,
    "login_max_failures_per_client": 5,
    "login_failure_window": 300,
    "login_account_slowdown_after": 6,
}


@pytest.fixture
def server(tmp_path: Path, settings: Settings) -> Iterator[Server]:
    changed = make_settings(
        tmp_path,
        settings.event_store_url,
        str(settings.redis_url),
        settings.redis_prefix,
        **LIMITS,
    )
    with Server(changed) as server:
        yield server


def _client(stack: ExitStack, server: Server, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return stack.enter_context(httpx.Client(base_url=server.url, transport=transport, timeout=30))


def _login(client: httpx.Client, email: str, password: str) -> httpx.Response:
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    if response.status_code == 429:
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["content-type"].startswith("application/problem+json")
    return response


def test_strangers_cannot_keep_the_owner_out_of_their_account(server: Server) -> None:
    with ExitStack() as stack:
        home = _client(stack, server, "127.0.0.1")
        _, email = register(home)
        first = _login(home, email, PASSWORD)
        assert first.status_code == 200
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{DEVICE_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "Path=/v1/auth" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie

        # Strangers from four other addresses, and one sharing the owner's (a NAT), each
        # guessing until refused.
        statuses: list[int] = []
        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.1"):
            stranger = _client(stack, server, address)
            statuses += [_login(stranger, email, f"guess {n}").status_code for n in range(8)]
        assert statuses.count(401) >= 6, statuses  # the attack reached the account...
        assert set(statuses) == {401, 429}
        # ...and a client new to the account is now slowed, even with the right password.
        newcomer = _client(stack, server, "127.0.0.9")
        slowed = _login(newcomer, email, PASSWORD)
        assert slowed.status_code == 429

        # The owner's usual client (it kept the device cookie) logs in all the same.
        assert _login(home, email, PASSWORD).status_code == 200


def test_a_stranger_with_the_owners_address_but_no_cookie_is_refused(server: Server) -> None:
    with ExitStack() as stack:
        home = _client(stack, server, "127.0.0.1")
        _, email = register(home)
        assert _login(home, email, PASSWORD).status_code == 200
        stranger = _client(stack, server, "127.0.0.1")
        statuses = [_login(stranger, email, f"guess {n}").status_code for n in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        # The right password does not help the stranger past the limit...
        assert _login(stranger, email, PASSWORD).status_code == 429
        # ...a forged cookie neither...
        stranger.cookies.set(DEVICE_COOKIE, "d1.9999999999.forged", path="/v1/auth")
        assert _login(stranger, email, PASSWORD).status_code == 429
        # ...while the owner, from the same address with the cookie, gets in.
        assert _login(home, email, PASSWORD).status_code == 200


def test_the_device_cookie_is_documented_on_both_login_routes(settings: Settings) -> None:
    paths = build_api(settings, "auth").openapi()["paths"]
    for path in ("/v1/auth/login", "/v1/auth/token"):
        answered = paths[path]["post"]["responses"]
        assert "Set-Cookie" in answered["200"]["headers"]
        assert "Tokens" in str(answered["200"]["content"])
        assert {"401", "429"} <= set(answered)
