"""If-Match parsing: the versions this API issues as ETags, ``*``, and nothing else."""

from __future__ import annotations

import pytest

from commands.http.tasks import parse_if_match
from domain.errors import UnparseablePrecondition


@pytest.mark.parametrize(
    ("header", "version"),
    [
        ('"3"', 3),
        ("3", 3),
        ('W/"3"', 3),
        (' "12" ', 12),
        ('"0"', 0),
        ('"' + "9" * 18 + '"', 10**18 - 1),
    ],
)
def test_an_issued_etag_names_its_version(header: str, version: int) -> None:
    assert parse_if_match(header) == version


@pytest.mark.parametrize("header", [None, "*", " * "])
def test_no_header_or_a_star_sets_no_precondition(header: str | None) -> None:
    assert parse_if_match(header) is None


@pytest.mark.parametrize(
    "header",
    [
        "",
        "abc",
        '"abc"',
        "²",
        '"²"',
        "٣",
        '"-1"',
        '"1.0"',
        '"1", "2"',
        '"' + "9" * 19 + '"',
        '"3',
        'W/3"',
    ],
)
def test_anything_else_is_an_unparseable_precondition(header: str) -> None:
    with pytest.raises(UnparseablePrecondition):
        parse_if_match(header)
