"""The User aggregate and the one normalisation of email addresses."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.identity import EmailIndex, User, normalise_email
from domain.meta import meta

META = meta(None, "test")

COMPOSED = unicodedata.normalize("NFC", "zoë@example.com")
DECOMPOSED = unicodedata.normalize("NFD", "Zoë@Example.com")


@pytest.mark.parametrize("spelling", [COMPOSED, DECOMPOSED, f"  {COMPOSED.upper()} "])
def test_every_spelling_of_an_address_normalises_alike(spelling: str) -> None:
    assert DECOMPOSED.lower() != COMPOSED
    assert normalise_email(spelling) == COMPOSED
    assert EmailIndex.create_id(spelling) == EmailIndex.create_id(COMPOSED)


def test_normalising_twice_changes_nothing() -> None:
    once = normalise_email(DECOMPOSED)
    assert normalise_email(once) == once


def _user_with_requests(*expiries: datetime) -> tuple[list[Any], list[UUID]]:
    user = User(email="ann@example.com", display_name="Ann", password_hash="h", meta=META)
    requests = [uuid4() for _ in expiries]
    for request_id, expires in zip(requests, expiries, strict=True):
        user.request_password_reset(
            request_id=request_id, expires_at=expires.isoformat(), meta=META
        )
    return list(user.collect_events()), requests


def _replay(events: list[Any], *at: datetime) -> User:
    """The user from its events, the reset requests stamped at the given instants."""
    created, *requested = events
    user: User = created.mutate(None)
    for event, timestamp in zip(requested, at, strict=True):
        user = type(event)(**{**vars(event), "timestamp": timestamp}).mutate(user)
    return user


def test_a_new_reset_request_drops_those_expired_by_its_own_time() -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    events, (first, second, third) = _user_with_requests(
        t0 + timedelta(minutes=30), t0 + timedelta(hours=2), t0 + timedelta(hours=3)
    )
    # The second came while the first was still valid; the third after the first had expired.
    user = _replay(events, t0, t0 + timedelta(minutes=10), t0 + timedelta(hours=1))
    assert set(user.pending_resets) == {str(second), str(third)}
    assert _replay(
        events, t0, t0 + timedelta(minutes=10), t0 + timedelta(minutes=20)
    ).pending_resets.keys() == {
        str(first),
        str(second),
        str(third),
    }


def test_dropping_expired_requests_is_the_same_on_every_replay() -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    events, _ = _user_with_requests(t0 + timedelta(minutes=30), t0 + timedelta(hours=2))
    stamps = (t0, t0 + timedelta(hours=1))
    assert _replay(events, *stamps).pending_resets == _replay(events, *stamps).pending_resets
    assert len(_replay(events, *stamps).pending_resets) == 1
