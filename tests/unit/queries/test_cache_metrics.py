"""Cache lookups are counted by cache and result: a cached page is a hit, a changed one a miss."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import REGISTRY

from projections.task_list.model import TaskQuery
from tests.unit.queries.test_task_queries import ALICE, World, render


def count(cache: str, result: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "taskledger_cache_requests_total", {"cache": cache, "result": result}
        )
        or 0.0
    )


async def test_page_and_stats_lookups_are_counted_by_result() -> None:
    world = World()
    task = world.history.create(ALICE, title="a")
    await world.write()
    await world.project()
    before = {(c, r): count(c, r) for c in ("task_pages", "task_stats") for r in ("hit", "miss")}

    await world.queries.page(ALICE, TaskQuery(), "all", render)  # filed
    await world.queries.page(ALICE, TaskQuery(), "all", render)  # served from the cache
    world.history.edit(task, title="b")
    await world.project()
    await world.queries.page(ALICE, TaskQuery(), "all", render)  # her version moved on
    await world.queries.counts(ALICE, datetime.now(UTC))

    after = {key: count(*key) for key in before}
    assert after[("task_pages", "miss")] - before[("task_pages", "miss")] == 2
    assert after[("task_pages", "hit")] - before[("task_pages", "hit")] == 1
    stats = sum(after[("task_stats", r)] - before[("task_stats", r)] for r in ("hit", "miss"))
    assert stats == 1
