"""Projection metrics (prometheus default registry), reported for the live generation only."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

POSITION = Gauge(
    "taskledger_projection_position",
    "Checkpoint of the live generation: last notification id applied, per upstream log.",
    ["projection", "upstream"],
    # The API's workers each publish the same reading (ops/projection_status.py): one series.
    multiprocess_mode="livemax",
)
HEAD = Gauge(
    "taskledger_projection_head",
    "Highest notification id in the upstream log.",
    ["projection", "upstream"],
    # The API's workers each publish the same reading (ops/projection_status.py): one series.
    multiprocess_mode="livemax",
)
LAG_EVENTS = Gauge(
    "taskledger_projection_lag_events",
    "Notifications in the upstream log beyond the checkpoint (head - position).",
    ["projection", "upstream"],
    # The API's workers each publish the same reading (ops/projection_status.py): one series.
    multiprocess_mode="livemax",
)
LAG_SECONDS = Gauge(
    "taskledger_projection_lag_seconds",
    "Age of the oldest event not yet projected; 0 when caught up.",
    ["projection", "upstream"],
    # The API's workers each publish the same reading (ops/projection_status.py): one series.
    multiprocess_mode="livemax",
)
PARKED = Gauge(
    "taskledger_projection_parked_events",
    "Poison events parked by the live generation.",
    ["projection"],
    multiprocess_mode="livemax",
)
CHECKPOINT_MISMATCH = Gauge(
    "taskledger_projection_checkpoint_mismatch",
    "1 while the live generation is stopped because its checkpoint claims a place the "
    "upstream log does not hold (ahead of it, another log, or a diverged one); "
    "`taskledger projections rebuild` clears it.",
    ["projection", "upstream"],
)
APPLIED = Counter(
    "taskledger_projection_events_applied_total",
    "Events applied by projectors (parked ones excluded).",
    ["projection"],
)


def forget(projection: str, upstreams: list[str]) -> None:
    """Drop a projection's series (this process no longer runs it)."""
    for upstream in upstreams:
        for gauge in (POSITION, HEAD, LAG_EVENTS, LAG_SECONDS, CHECKPOINT_MISMATCH):
            try:
                gauge.remove(projection, upstream)
            except KeyError:
                continue
