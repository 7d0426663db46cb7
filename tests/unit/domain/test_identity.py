"""The User aggregate and the one normalisation of email addresses."""

from __future__ import annotations

import unicodedata

import pytest

from domain.identity import EmailIndex, normalise_email

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
