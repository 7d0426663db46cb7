"""What a Bearer route pays for the session check: one store call, whatever this issue added
(lifetimes, listing, device cookies live elsewhere)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from commands.auth.memory import InMemorySessionStore
from commands.auth.sessions import Sessions
from commands.auth.tokens import JwtTokens, signing_key


class CountingStore(InMemorySessionStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name in {"open", "rotate", "is_active", "revoke", "revoke_all", "sessions"}:
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


async def test_checking_an_access_token_is_one_store_call() -> None:
    store = CountingStore()
    sessions = Sessions(
        JwtTokens(signing_key(b"s" * 32), algorithm="HS256", access_ttl=900, refresh_ttl=3600),
        store,
        idle_timeout=600,
        lifetime=3600,
    )
    user = uuid4()
    pair = await sessions.open(user, 1)
    store.calls.clear()
    for _ in range(3):
        assert await sessions.user_for(pair.access_token) == user
    assert store.calls == ["is_active"] * 3
