"""Identity commands that lose a race on a user: re-read, and refuse only what is really spent.

A stand-in for ``Identity.commits`` lets another write to the same user land just before the
command's own save, which is exactly what a concurrent request does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from commands.identity import Identity
from domain.errors import InvalidResetToken
from domain.meta import meta

EMAIL = "ann@example.com"
META = meta(None, "test")
TTL = timedelta(minutes=30)


class CutIn:
    """Passes saves on to the real group commit; before the first, runs ``first`` (a competing
    write, saved through this same object)."""

    def __init__(self, commits: Any, first: Callable[[], object]) -> None:
        self._commits = commits
        self._first: Callable[[], object] | None = first
        self.saves = 0

    def save(self, *aggregates: Any) -> Any:
        self.saves += 1
        first, self._first = self._first, None
        if first is not None:
            first()
        return self._commits.save(*aggregates)


@pytest.fixture
def identity() -> Identity:
    return Identity()


def _register(identity: Identity) -> UUID:
    return identity.register(email=EMAIL, display_name="Ann", password_hash="old", meta=META).id


def _cut_in(
    identity: Identity, monkeypatch: pytest.MonkeyPatch, first: Callable[[], object]
) -> None:
    monkeypatch.setattr(identity, "commits", CutIn(identity.commits, first))


def test_a_reset_request_that_loses_a_race_is_recorded_all_the_same(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = _register(identity)
    competing: list[Any] = []
    _cut_in(
        identity,
        monkeypatch,
        lambda: competing.append(identity.request_password_reset(EMAIL, ttl=TTL, meta=META)),
    )
    requested = identity.request_password_reset(EMAIL, ttl=TTL, meta=META)
    assert requested is not None
    pending = identity.get_user(user).pending_resets
    assert set(pending) == {str(requested.claim.request_id), str(competing[0].claim.request_id)}
    assert requested.written.version == identity.get_user(user).version


def test_a_reset_that_loses_a_race_to_a_reset_request_still_resets(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = _register(identity)
    requested = identity.request_password_reset(EMAIL, ttl=TTL, meta=META)
    assert requested is not None
    _cut_in(
        identity, monkeypatch, lambda: identity.request_password_reset(EMAIL, ttl=TTL, meta=META)
    )
    written = identity.reset_password(requested.claim, password_hash="new", meta=META)
    changed = identity.get_user(user)
    assert changed.password_hash == "new"
    assert written.version == changed.version
    assert changed.pending_resets == {}


def test_a_reset_that_loses_a_race_to_the_same_token_is_already_used(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = _register(identity)
    requested = identity.request_password_reset(EMAIL, ttl=TTL, meta=META)
    assert requested is not None
    claim = requested.claim
    _cut_in(
        identity,
        monkeypatch,
        lambda: identity.reset_password(claim, password_hash="winner", meta=META),
    )
    with pytest.raises(InvalidResetToken):
        identity.reset_password(claim, password_hash="loser", meta=META)
    assert identity.get_user(user).password_hash == "winner"


def test_a_reset_reads_the_user_it_was_given_no_more(
    identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(identity)
    requested = identity.request_password_reset(EMAIL, ttl=TTL, meta=META)
    assert requested is not None
    user = identity.pending_reset(requested.claim)
    reads: list[object] = []
    real_get = identity.repository.get

    def get(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(identity.repository, "get", get)
    identity.reset_password(requested.claim, password_hash="new", meta=META, user=user)
    assert reads == []
