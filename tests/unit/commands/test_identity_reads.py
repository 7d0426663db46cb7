"""Login's lookup reads the store alike for an unknown email and a registered one."""

from __future__ import annotations

from typing import Any

import pytest

from commands.identity import Identity
from domain.meta import meta


def _reads(identity: Identity, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The originator ids the recorder is asked for, in order."""
    asked: list[Any] = []
    select = identity.recorder.select_events

    def counting(originator_id: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(originator_id)
        return select(originator_id, *args, **kwargs)

    monkeypatch.setattr(identity.recorder, "select_events", counting)
    return asked


def test_an_unknown_email_costs_the_same_reads_as_a_registered_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity = Identity()
    identity.register(
        email="ann@example.com", display_name="Ann", password_hash="h", meta=meta(None, "t")
    )
    asked = _reads(identity, monkeypatch)
    assert identity.find_by_email("ann@example.com") is not None
    known = list(asked)
    asked.clear()
    assert identity.find_by_email("bob@example.com") is None
    assert len(asked) == len(known) == 2
    # The second read of an unknown email is of a user, not of the index again.
    assert asked[0] != asked[1]
