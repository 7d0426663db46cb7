"""Reset tokens: what is derived verifies, and nothing else does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidResetToken
from domain.reset_tokens import ResetClaim, derive_reset_token, reset_key, verify_reset_token

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

secrets_ = st.binary(min_size=1, max_size=64)
claims = st.builds(
    ResetClaim,
    user_id=st.uuids(),
    request_id=st.uuids(),
    # Whole seconds: the token carries its expiry to the second.
    expires_at=st.integers(1, 10 * 365 * 86_400).map(lambda s: NOW + timedelta(seconds=s)),
)
# Any character a URL or a mail client could put in the token's place.
characters = st.characters(min_codepoint=32, max_codepoint=126)


@settings(max_examples=50, derandomize=True)
@given(secret=secrets_, claim=claims)
def test_a_derived_token_verifies_to_its_claim(secret: bytes, claim: ResetClaim) -> None:
    key = reset_key(secret)
    assert verify_reset_token(key, derive_reset_token(key, claim), NOW) == claim


@settings(max_examples=50, derandomize=True)
@given(secret=secrets_, claim=claims, data=st.data())
def test_any_altered_character_fails(secret: bytes, claim: ResetClaim, data: st.DataObject) -> None:
    key = reset_key(secret)
    token = derive_reset_token(key, claim)
    at = data.draw(st.integers(0, len(token) - 1), label="position")
    new = data.draw(characters.filter(lambda c: c != token[at]), label="replacement")
    altered = token[:at] + new + token[at + 1 :]
    with pytest.raises(InvalidResetToken):
        verify_reset_token(key, altered, NOW)


@settings(max_examples=30, derandomize=True)
@given(secret=secrets_, claim=claims, data=st.data())
def test_inserted_or_removed_characters_fail(
    secret: bytes, claim: ResetClaim, data: st.DataObject
) -> None:
    key = reset_key(secret)
    token = derive_reset_token(key, claim)
    at = data.draw(st.integers(0, len(token) - 1), label="position")
    inserted = token[:at] + data.draw(characters, label="inserted") + token[at:]
    removed = token[:at] + token[at + 1 :]
    for altered in (inserted, removed):
        with pytest.raises(InvalidResetToken):
            verify_reset_token(key, altered, NOW)


@settings(max_examples=30, derandomize=True)
@given(claim=claims, secrets=st.lists(secrets_, min_size=2, max_size=2, unique=True))
def test_another_secret_fails(claim: ResetClaim, secrets: list[bytes]) -> None:
    token = derive_reset_token(reset_key(secrets[0]), claim)
    with pytest.raises(InvalidResetToken):
        verify_reset_token(reset_key(secrets[1]), token, NOW)


def test_an_expired_token_fails() -> None:
    key = reset_key(b"secret")
    claim = ResetClaim(UUID(int=1), UUID(int=2), NOW)
    with pytest.raises(InvalidResetToken, match="expired"):
        verify_reset_token(key, derive_reset_token(key, claim), NOW)


def test_the_key_is_derived_not_the_secret() -> None:
    assert reset_key(b"secret") != b"secret"
    assert reset_key(b"secret") == reset_key(b"secret")
    assert reset_key(b"secret") != reset_key(b"secreT")


def test_every_single_character_change_of_one_token_fails() -> None:
    # Exhaustive for one token: the spare low bits of a base64 tail character are the
    # classic way a changed string still decodes to the same bytes.
    key = reset_key(b"secret")
    token = derive_reset_token(key, ResetClaim(UUID(int=7), UUID(int=8), NOW + timedelta(1)))
    accepted = []
    for at, original in enumerate(token):
        for code in range(32, 127):
            if chr(code) == original:
                continue
            altered = token[:at] + chr(code) + token[at + 1 :]
            try:
                verify_reset_token(key, altered, NOW)
            except InvalidResetToken:
                continue
            accepted.append(altered)
    assert accepted == []
