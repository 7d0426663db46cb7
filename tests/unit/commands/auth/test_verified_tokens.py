"""A token read once is remembered as verified; it still expires, and nothing else gets in."""

from __future__ import annotations

import time
from uuid import uuid4

import jwt
import pytest

from commands.auth import tokens as tokens_module
from commands.auth.tokens import JwtTokens, Kind, signing_key
from domain.errors import Unauthenticated

KEY = signing_key(b"unit-secret")


def tokens() -> JwtTokens:
    return JwtTokens(KEY, algorithm="HS256", access_ttl=900, refresh_ttl=3600)


def test_a_remembered_token_reads_as_the_same_claims_without_decoding_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = tokens()
    issued = reader.issue(Kind.ACCESS, uuid4(), "s")
    first = reader.read(Kind.ACCESS, issued.token)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(jwt, "decode", no_decoding)
    assert reader.read(Kind.ACCESS, issued.token) == first == issued.claims


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = tokens()
    issued = reader.issue(Kind.ACCESS, uuid4(), "s")
    reader.read(Kind.ACCESS, issued.token)
    expiry = issued.claims.expires_at.timestamp()

    monkeypatch.setattr(time, "time", lambda: expiry - 1)
    assert reader.read(Kind.ACCESS, issued.token) == issued.claims
    monkeypatch.setattr(time, "time", lambda: expiry)
    with pytest.raises(Unauthenticated):
        reader.read(Kind.ACCESS, issued.token)


def test_remembering_one_kind_does_not_admit_the_token_as_the_other() -> None:
    reader = tokens()
    refresh = reader.issue(Kind.REFRESH, uuid4(), "s")
    reader.read(Kind.REFRESH, refresh.token)
    with pytest.raises(Unauthenticated):
        reader.read(Kind.ACCESS, refresh.token)


def test_a_tampered_copy_of_a_remembered_token_is_refused() -> None:
    reader = tokens()
    issued = reader.issue(Kind.ACCESS, uuid4(), "s")
    reader.read(Kind.ACCESS, issued.token)
    header, payload, signature = issued.token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(Unauthenticated):
        reader.read(Kind.ACCESS, f"{header}.{payload}.{flipped}")
    other_server = JwtTokens(
        signing_key(b"another-secret"), algorithm="HS256", access_ttl=900, refresh_ttl=3600
    )
    with pytest.raises(Unauthenticated):
        other_server.read(Kind.ACCESS, issued.token)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "VERIFIED_TOKENS_KEPT", 3)
    reader = tokens()
    issued = [reader.issue(Kind.ACCESS, uuid4(), f"s{n}") for n in range(7)]
    for one in issued:
        assert reader.read(Kind.ACCESS, one.token) == one.claims
    assert len(reader._verified) <= 3
    assert all(reader.read(Kind.ACCESS, one.token) == one.claims for one in issued)
