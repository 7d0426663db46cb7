"""The API's start-up closes what it opened when a later step fails."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ops.api import build_api
from tests.fixtures.api import make_settings


def connections_to(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_failing_read_side_leaves_no_event_store_connection_open(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    before = connections_to(postgres_url)
    # The write side and Redis open first; then the document store's URL cannot be used.
    settings = make_settings(
        tmp_path, postgres_url, redis_url, redis_prefix, mongo_url="mongodb://127.0.0.1:0/x"
    )
    app = build_api(settings)
    with pytest.raises(Exception, match=r"(?i)port"):
        async with app.router.lifespan_context(app):
            pass
    assert connections_to(postgres_url) == before
