"""JWTs: only what this server signed, with its pinned algorithm, unexpired, of the right kind."""

from __future__ import annotations

import base64
import json
import time
from uuid import uuid4

import jwt
import pytest

from commands.auth.tokens import ISSUER, JwtTokens, Kind, signing_key
from domain.errors import Unauthenticated

KEY = signing_key(b"unit-secret")


def tokens(clock: float | None = None) -> JwtTokens:
    return JwtTokens(
        KEY,
        algorithm="HS256",
        access_ttl=900,
        refresh_ttl=3600,
        clock=(lambda: clock) if clock is not None else time.time,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims() -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "typ": "access",
        "sub": str(uuid4()),
        "sid": "s",
        "jti": "j",
        "iat": now,
        "exp": now + 900,
    }


def test_an_issued_token_reads_back_to_its_claims() -> None:
    user = uuid4()
    issued = tokens().issue(Kind.ACCESS, user, "session-1")
    claims = tokens().read(Kind.ACCESS, issued.token)
    assert claims == issued.claims
    assert (claims.user_id, claims.session_id) == (user, "session-1")


def test_every_token_has_its_own_id() -> None:
    user = uuid4()
    ids = {tokens().issue(Kind.ACCESS, user, "s").claims.token_id for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("part", [0, 1, 2])
def test_a_tampered_token_is_refused(part: int) -> None:
    token = tokens().issue(Kind.ACCESS, uuid4(), "s").token
    pieces = token.split(".")
    if part == 1:
        payload = json.loads(base64.urlsafe_b64decode(pieces[1] + "=="))
        payload["sub"] = str(uuid4())
        pieces[1] = _b64(json.dumps(payload).encode())
    else:
        # Flip a character in the middle: the low bits of the last one may not matter.
        middle = len(pieces[part]) // 2
        pieces[part] = (
            pieces[part][:middle]
            + ("A" if pieces[part][middle] != "A" else "B")
            + pieces[part][middle + 1 :]
        )
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.ACCESS, ".".join(pieces))


def test_alg_none_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    token = f"{header}.{_b64(json.dumps(_claims()).encode())}."
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.ACCESS, token)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_another_algorithm_with_the_right_key_is_refused(algorithm: str) -> None:
    token = jwt.encode(_claims(), KEY, algorithm=algorithm)
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.ACCESS, token)


def test_the_pinned_algorithm_with_the_right_key_is_accepted() -> None:
    # The control for the test above: the crafted claims themselves are acceptable.
    assert tokens().read(Kind.ACCESS, jwt.encode(_claims(), KEY, algorithm="HS256"))


def test_another_key_is_refused() -> None:
    token = jwt.encode(_claims(), signing_key(b"other-secret"), algorithm="HS256")
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.ACCESS, token)


def test_an_expired_token_is_refused() -> None:
    issued = tokens(clock=time.time() - 901).issue(Kind.ACCESS, uuid4(), "s")
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.ACCESS, issued.token)


def test_a_refresh_token_is_not_an_access_token_nor_the_reverse() -> None:
    refresh = tokens().issue(Kind.REFRESH, uuid4(), "s").token
    access = tokens().issue(Kind.ACCESS, uuid4(), "s").token
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.ACCESS, refresh)
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.REFRESH, access)


@pytest.mark.parametrize("missing", ["exp", "iat", "jti", "sub", "sid", "typ", "iss"])
def test_a_token_missing_a_claim_is_refused(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.ACCESS, jwt.encode(claims, KEY, algorithm="HS256"))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x", "\u00e9.\u00e9.\u00e9"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(Unauthenticated):
        tokens().read(Kind.ACCESS, garbage)


def test_the_signing_key_is_derived_and_long_enough_for_hs512() -> None:
    assert signing_key(b"secret") != b"secret"
    assert len(signing_key(b"secret")) == 64
