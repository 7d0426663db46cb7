"""Read-side metrics (prometheus-client default registry)."""

from __future__ import annotations

from prometheus_client import Counter

CACHE_REQUESTS = Counter(
    "taskledger_cache_requests_total",
    "Read-side cache lookups by cache (task_pages, task_stats) and result (hit, miss).",
    ["cache", "result"],
)
