"""Outages: Redis stopped mid-test (lists and counters answer from MongoDB), MongoDB stopped
(queries answer 503 with a problem body, commands keep working, /users/me still answers).

Each test stops an engine of its own, never the machine's or the session's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from pymongo import AsyncMongoClient

from ops.bootstrap import API_REDIS_TIMEOUT, redis_client
from ops.engines import Daemon, embedded_redis, free_port, mongo_url_for, secantus
from ops.settings import Settings
from projections.aliases import LiveGenerations, MongoAliasRegistry
from projections.checkpoints import MongoCheckpointStore, checkpoints_of
from projections.task_list.model import Sort, TaskPage, TaskQuery
from projections.task_list.mongo import MongoTaskCollection, MongoTaskReadModel
from projections.task_list.projection import TaskListProjection
from projections.task_list.redis import RedisCacheInvalidator, RedisPageCache
from projections.task_stats.redis import RedisTaskStats, TaskStatsProjection
from projections.write_positions import RedisWritePositions
from queries.tasks.reads import TaskQueries
from tests.fixtures.api import Server, make_settings
from tests.fixtures.read_side import EPOCH, TaskHistory
from tests.fixtures.users import sign_in

ALICE = UUID(int=1)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Daemon]:
    daemon = embedded_redis(tmp_path / "redis", free_port(), log_dir=tmp_path)
    daemon.start()
    yield daemon
    daemon.stop()


def render(page: TaskPage) -> bytes:
    return json.dumps([str(row.id) for row in page.items]).encode()


async def test_redis_stopped_lists_and_counters_answer_from_mongodb(
    own_redis: Daemon, mongo_url: str, tmp_path: Path
) -> None:
    port = int(own_redis.argv[own_redis.argv.index("--port") + 1])
    settings = make_settings(
        tmp_path,
        None,
        f"redis://127.0.0.1:{port}/0",
        "outage:",
        mongo_url=mongo_url,
        read_your_writes_timeout=1.0,
    )
    redis = redis_client(settings, timeout=API_REDIS_TIMEOUT, retries=0)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = mongo.get_default_database()
    history = TaskHistory()
    for i in range(7):
        history.create(ALICE, status=["todo", "done"][i % 2], due=EPOCH + timedelta(days=i))
    checkpoints = MongoCheckpointStore(db)
    for projection in (
        TaskListProjection(
            table=lambda g: MongoTaskCollection(db, g),
            cache=lambda g: RedisCacheInvalidator(redis, settings.redis_prefix, g),
        ),
        TaskStatsProjection(redis, settings.redis_prefix),
    ):
        projector = projection.projector(1)
        await projector.start()
        await projector.apply(history.envelopes)
        store = checkpoints_of(projection, checkpoints)
        await store.advance(projection.name, 1, "Tasks", len(history.envelopes))
    positions = RedisWritePositions(redis, settings.redis_prefix)
    await positions.wrote(ALICE, "Tasks", len(history.envelopes))
    generations = LiveGenerations(MongoAliasRegistry(db))
    queries = TaskQueries(
        read_model=MongoTaskReadModel(db, generations),
        stats=RedisTaskStats(redis, settings.redis_prefix),
        cache=RedisPageCache(redis, settings.redis_prefix),
        positions=positions,
        generations=generations,
        timeout=settings.read_your_writes_timeout,
    )
    query = TaskQuery(sort=Sort("due_date", descending=False), limit=5)
    now = EPOCH + timedelta(days=3, hours=1)
    try:
        page = await queries.page(ALICE, query, "k", render)
        assert len(json.loads(page)) == 5
        counts = await queries.counts(ALICE, now)
        assert (counts.todo, counts.done, counts.overdue) == (4, 3, 2)
        assert await queries.page(ALICE, query, "k", render) == page  # served from the cache

        own_redis.stop()

        assert await queries.page(ALICE, query, "k", render) == page
        assert await queries.counts(ALICE, now) == counts
        assert await queries.page(ALICE, query, "k", render) == page  # repeatedly
    finally:
        await redis.aclose()
        await mongo.drop_database(db.name)
        await mongo.close()


@pytest.fixture
def own_mongo(tmp_path: Path) -> Iterator[Daemon]:
    daemon = secantus(tmp_path / "secantus", free_port(), log_dir=tmp_path)
    daemon.start()
    yield daemon
    daemon.stop()


def test_mongodb_stopped_queries_answer_503_and_commands_keep_working(
    own_mongo: Daemon, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    port = int(own_mongo.argv[own_mongo.argv.index("--port") + 1])
    settings: Settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'events.sqlite'}",
        redis_url,
        redis_prefix,
        mongo_url=mongo_url_for("127.0.0.1", port, "outage"),
        read_your_writes_timeout=0.5,
    )
    with Server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as api:
        user = sign_in(api, display_name="Grace")
        assert api.get("/v1/tasks/stats", headers=user.headers).status_code == 200

        own_mongo.stop()

        for path in (
            "/v1/tasks",
            "/v1/tasks/stats",
            "/v1/tasks/00000000-0000-0000-0000-000000000001",
        ):
            response = api.get(path, headers=user.headers)
            assert response.status_code == 503, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["dependency"] == "document store"
        created = api.post("/v1/tasks", json={"title": "still writable"}, headers=user.headers)
        assert created.status_code == 201
        me = api.get("/v1/users/me", headers=user.headers)
        assert me.status_code == 200
        assert me.json()["display_name"] == "Grace"
