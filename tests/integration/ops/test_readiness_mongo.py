"""Readiness checks MongoDB when the process reads from it, and names it when it is down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from ops.api import readiness_probes
from ops.bootstrap import build_write_side
from ops.engines import free_port, mongo_url_for
from tests.fixtures.api import make_settings


async def run_probes(tmp_path: Path, redis_url: str, mongo_url: str) -> dict[str, str]:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'e.sqlite'}", redis_url, "ready:")
    write_side = build_write_side(settings)
    redis = Redis.from_url(redis_url)
    mongo: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=500)
    outcomes: dict[str, str] = {}
    try:
        for name, probe in readiness_probes(write_side, redis, mongo).items():
            try:
                await probe()
                outcomes[name] = "ok"
            except Exception as exc:  # the outcome is what is asserted
                outcomes[name] = type(exc).__name__
    finally:
        await mongo.close()
        await redis.aclose()
        write_side.close()
    return outcomes


async def test_mongo_is_checked_and_ready(tmp_path: Path, redis_url: str, mongo_url: str) -> None:
    assert await run_probes(tmp_path, redis_url, mongo_url) == {
        "event_store": "ok",
        "redis": "ok",
        "mongo": "ok",
    }


async def test_a_mongo_nobody_serves_fails_its_probe_only(tmp_path: Path, redis_url: str) -> None:
    dead = mongo_url_for("127.0.0.1", free_port(), "nobody")
    outcomes = await run_probes(tmp_path, redis_url, dead)
    assert outcomes["event_store"] == outcomes["redis"] == "ok"
    assert outcomes["mongo"] == "ServerSelectionTimeoutError"
