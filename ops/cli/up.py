"""``taskledger up``: the whole system on embedded engines, in one supervised process tree."""

from __future__ import annotations


def up() -> None:
    """Start everything on embedded engines."""
    raise NotImplementedError
