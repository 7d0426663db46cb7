"""argon2id hashes: verify only the right password, never raise, never accept nobody."""

from __future__ import annotations

import pytest

from commands.auth.passwords import Argon2Hasher


@pytest.fixture(scope="module")
def hasher() -> Argon2Hasher:
    return Argon2Hasher(time_cost=1, memory_cost=64)


def test_the_hash_is_argon2id_with_the_configured_costs(hasher: Argon2Hasher) -> None:
    hashed = hasher.hash("a password")
    assert hashed.startswith("$argon2id$")
    assert "m=64,t=1" in hashed
    assert "a password" not in hashed


def test_the_right_password_verifies_and_a_wrong_one_does_not(hasher: Argon2Hasher) -> None:
    hashed = hasher.hash("a password")
    assert hasher.verify(hashed, "a password")
    assert not hasher.verify(hashed, "a passwore")
    assert not hasher.verify(hashed, "")


def test_the_same_password_hashes_differently_each_time(hasher: Argon2Hasher) -> None:
    assert hasher.hash("a password") != hasher.hash("a password")


@pytest.mark.parametrize("bad_hash", ["", "not a hash", "$argon2id$v=19$m=64,t=1,p=4$xx$yy"])
def test_a_broken_hash_is_a_mismatch_not_an_error(hasher: Argon2Hasher, bad_hash: str) -> None:
    assert not hasher.verify(bad_hash, "a password")


def test_nobody_has_any_password(hasher: Argon2Hasher) -> None:
    assert not hasher.verify_nobody("a password")
    assert not hasher.verify_nobody("")


def test_nobody_costs_what_a_real_check_costs(hasher: Argon2Hasher) -> None:
    # Same algorithm and parameters as a real hash, so verifying against it takes as long.
    parameters = hasher._nobody.rsplit("$", 2)[0]
    assert parameters == hasher.hash("x").rsplit("$", 2)[0]


def test_only_a_weaker_hash_needs_rehashing(hasher: Argon2Hasher) -> None:
    stronger = Argon2Hasher(time_cost=2, memory_cost=128)
    weak, strong = hasher.hash("a password"), stronger.hash("a password")
    assert stronger.needs_rehash(weak)
    assert Argon2Hasher(time_cost=2, memory_cost=64).needs_rehash(weak)
    assert Argon2Hasher(time_cost=1, memory_cost=128).needs_rehash(weak)
    assert not stronger.needs_rehash(strong)
    assert not hasher.needs_rehash(weak)
    # Lowering the cost does not weaken hashes already made.
    assert not hasher.needs_rehash(strong)
    assert not hasher.needs_rehash("not a hash")
