"""Two API servers on one Redis: each remembers open sessions for a moment (no Redis round trip
per command), yet a logout or a session deletion made on one acts on the other within 1 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from commands.auth.redis import RedisSessionStore
from ops.settings import Settings
from tests.fixtures.api import Server
from tests.fixtures.users import SignedIn, bearer, sign_in

WITHIN = 1.0


@pytest.fixture
def two_apis(settings: Settings) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with (
        Server(settings) as one,
        Server(settings) as two,
        httpx.Client(base_url=one.url, timeout=30) as a,
        httpx.Client(base_url=two.url, timeout=30) as b,
    ):
        yield a, b


def _refused_within(client: httpx.Client, token: str) -> float:
    """Seconds until ``client`` answers 401 to the token; fails after twice the bound."""
    started = time.monotonic()
    while time.monotonic() - started < 2 * WITHIN:
        response = client.post("/v1/tasks", json={"title": "after"}, headers=bearer(token))
        if response.status_code == 401:
            return time.monotonic() - started
        assert response.status_code == 201, response.text
        time.sleep(0.02)
    raise AssertionError("the revoked token kept working")


def _warm(client: httpx.Client, user: SignedIn) -> None:
    # Several commands in a row: the server now trusts the session without asking Redis.
    for n in range(3):
        response = client.post("/v1/tasks", json={"title": f"t{n}"}, headers=user.headers)
        assert response.status_code == 201, response.text


@pytest.mark.parametrize("event_store_url", ["sqlite"], indirect=True)
def test_a_logout_on_one_server_acts_on_the_other_within_a_second(
    two_apis: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = two_apis
    user = sign_in(a)
    _warm(a, user)
    _warm(b, user)
    assert a.post("/v1/auth/logout", headers=user.headers).status_code == 204
    # At once where it happened; within the bound on the other server.
    assert a.post("/v1/tasks", json={"title": "x"}, headers=user.headers).status_code == 401
    assert _refused_within(b, user.access_token) < WITHIN


@pytest.mark.parametrize("event_store_url", ["sqlite"], indirect=True)
def test_a_revocation_straight_in_redis_acts_on_both_servers_within_a_second(
    two_apis: tuple[httpx.Client, httpx.Client], settings: Settings
) -> None:
    """As an operator process would (``users erase``): neither server made the revocation."""
    a, b = two_apis
    user = sign_in(a)
    _warm(a, user)
    _warm(b, user)

    async def revoke_all() -> None:
        client = Redis.from_url(str(settings.redis_url))
        try:
            store = RedisSessionStore(client, settings.redis_prefix)
            await store.revoke_all(user.id, before_version=1, ttl=60)
        finally:
            await client.aclose()

    asyncio.run(revoke_all())
    assert _refused_within(a, user.access_token) < WITHIN
    assert _refused_within(b, user.access_token) < WITHIN
