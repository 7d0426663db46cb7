"""Instants as the API takes them: ISO 8601 date-time text, never a bare number."""

from __future__ import annotations

from datetime import datetime


def not_a_number(value: object) -> object:
    """Refuse 0 or "1700000000": pydantic would read either as Unix time, where the contract
    says date-time. Anything else passes on to the date-time parser."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 date-time string, not a number")
    if isinstance(value, str | bytes):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an ISO 8601 date-time string, not a number")
    return value
