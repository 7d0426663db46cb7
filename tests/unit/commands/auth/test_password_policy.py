"""The password policy beside the length rule: not a common password, not the email."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from commands.auth.passwords import common_passwords, password_problem

ROOT = Path(__file__).resolve().parents[4]


def test_the_list_holds_the_10000_most_common_passwords() -> None:
    common = common_passwords()
    assert len(common) == 10_000
    assert {"123456", "password", "qwerty", "iloveyou", "trustno1"} <= common
    assert not any(p.startswith("# ") for p in common)


def test_the_list_ships_in_the_wheel_with_its_licence() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = config["tool"]["setuptools"]["package-data"]["*"]
    assert {"*.txt", "*.LICENSE"} <= set(shipped)
    folder = ROOT / "commands" / "auth"
    assert "MIT License" in (folder / "common_passwords.LICENSE").read_text()
    assert "zxcvbn 4.5.0" in (folder / "common_passwords.txt").read_text()[:1000]


@pytest.mark.parametrize("password", ["password", "PASSWORD1", "iloveyou", "Trustno1", "12345678"])
def test_a_common_password_is_refused_in_any_case(password: str) -> None:
    assert password_problem(password, "ann@example.com") is not None


@pytest.mark.parametrize("password", ["ann@example.com", "ANN@Example.com", " ann@example.com"])
def test_the_accounts_own_email_is_refused(password: str) -> None:
    problem = password_problem(password, "Ann@example.com")
    assert problem is not None
    assert "email" in problem


def test_an_uncommon_password_passes() -> None:
    assert password_problem("correct horse battery staple", "ann@example.com") is None
    assert password_problem("bob@example.com", "ann@example.com") is None
