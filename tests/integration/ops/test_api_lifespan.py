"""The API's start-up closes what it opened when a later step fails."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ops.api import build_api
from ops.settings import Settings
from tests.fixtures.api import make_settings
from tests.fixtures.services import PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of this test's own: connections left over by earlier tests' servers, still
    closing in the session database, must not move the counts compared here."""
    name = f"tl_lifespan_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    # A pool closed while its background workers were still connecting sees those connections
    # finish and close a moment later; a leak would stay open.
    for _ in range(50):
        if connections_to(postgres_url) == before:
            break
        await asyncio.sleep(0.1)
    assert connections_to(postgres_url) == before


async def test_an_api_process_holds_few_connections_with_the_default_pools(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    defaults = Settings.model_fields
    settings = make_settings(
        tmp_path,
        postgres_url,
        redis_url,
        redis_prefix,
        postgres_pool_size=defaults["postgres_pool_size"].default,
        postgres_max_overflow=defaults["postgres_max_overflow"].default,
    )
    before = connections_to(postgres_url)
    app = build_api(settings)
    async with app.router.lifespan_context(app):
        # The pools open their connections in the background: wait until they settle.
        seen = []
        for _ in range(30):
            seen.append(connections_to(postgres_url) - before)
            if len(seen) > 5 and len(set(seen[-5:])) == 1:
                break
            await asyncio.sleep(0.1)
    # Identity and Tasks keep POSTGRES_POOL_SIZE (2) each, the audit reader one; each pool
    # opens one more while the first request (creating its tables) waits for the others.
    assert seen[-1] <= (2 + 1) + (2 + 1) + (1 + 1)
