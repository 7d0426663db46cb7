"""If-Match parsing (RFC 9110 13.1.1): a list of entity-tags compared strongly, or ``*``."""

from __future__ import annotations

import pytest

from commands.http.tasks import parse_if_match
from domain.errors import UnparseablePrecondition


@pytest.mark.parametrize(
    ("header", "versions"),
    [
        ('"3"', {3}),
        ("3", {3}),
        (' "12" ', {12}),
        ('"0"', {0}),
        ('"' + "9" * 18 + '"', {10**18 - 1}),
        ('"1", "2"', {1, 2}),
        ('"1","7" , W/"9"', {1, 7}),
    ],
)
def test_strong_etags_name_their_versions(header: str, versions: set[int]) -> None:
    assert parse_if_match(header) == frozenset(versions)


@pytest.mark.parametrize(
    "header",
    ['W/"3"', '"abc"', '"²"', '"-1"', '"1.0"', '""', '"' + "9" * 19 + '"', 'W/"1", W/"2"'],
)
def test_weak_or_foreign_etags_match_no_version(header: str) -> None:
    # Well-formed, so no parse error; a weak tag never matches If-Match's strong comparison.
    assert parse_if_match(header) == frozenset()


@pytest.mark.parametrize("header", [None, "*", " * "])
def test_no_header_or_a_star_sets_no_precondition(header: str | None) -> None:
    assert parse_if_match(header) is None


@pytest.mark.parametrize(
    "header", ["", "abc", "²", "٣", '"3', 'W/3"', '"1",', '"1" "2"', "W/3", '"a"b"']
)
def test_anything_else_is_an_unparseable_precondition(header: str) -> None:
    with pytest.raises(UnparseablePrecondition):
        parse_if_match(header)
