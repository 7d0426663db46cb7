"""Date-time options, read as the API reads them: ISO 8601 with a zone, or a one-line refusal."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ops.cli.environment import refuse


def instant(value: str | None, option: str) -> datetime | None:
    """A naive time would mean a different instant on every operator's machine: refused."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise refuse(f"{option}: {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise refuse(f"{option}: {value!r} has no time zone; add one, e.g. {value}Z")
    return parsed


def identifier(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise refuse(f"{value!r} is not a {what} id (a UUID)") from None
