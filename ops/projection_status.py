"""Where each projection stands: the rows of ``taskledger projections status``, and the same
reading published as the API's projection gauges, so one scrape of the API shows the lag.

Read from the checkpoints, aliases and log heads: a few small queries per projection. The API
refreshes its gauges in the background, every ``REFRESH_EVERY`` seconds; a scrape only reads them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from projections import metrics
from projections.aliases import AliasState
from projections.host import projector_version
from projections.log import checkpoint_problem

if TYPE_CHECKING:
    from ops.projections import ReadSide
    from projections.aliases import Alias
    from projections.envelope import Projection

log = logging.getLogger(__name__)

REFRESH_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    upstream: str
    position: int
    head: int
    lag_seconds: float


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    generation: int
    version: int
    upstreams: list[UpstreamStatus]
    parked: int
    state: str


def describe_state(
    alias: Alias | None, code_version: int, building: str | None, problems: Sequence[str] = ()
) -> str:
    if alias is None:
        return "not started"
    parts = []
    if problems:
        parts.append(f"stopped: {'; '.join(problems)}; run `taskledger projections rebuild`")
    elif alias.state is AliasState.PAUSED:
        parts.append("paused: in-place rebuild")
    elif building is not None:
        parts.append(f"live; building g{alias.building} ({building})")
    else:
        parts.append("live")
    if alias.retiring:
        parts.append("retiring " + ", ".join(f"g{r.generation}" for r in alias.retiring))
    if alias.version != code_version:
        parts.append(f"outdated: built by v{alias.version}, code is v{code_version}")
    return "; ".join(parts)


async def projection_status(side: ReadSide, projection: Projection) -> ProjectionStatus:
    alias = await side.aliases.get(projection.name)
    generation = 1 if alias is None else alias.generation
    now = datetime.now(UTC)
    upstreams = []
    heads: dict[str, int] = {}
    problems: list[str] = []
    for upstream in projection.upstreams:
        log = side.logs[upstream]
        checkpoint = await side.checkpoints.read(projection.name, generation, upstream)
        problem = await asyncio.to_thread(checkpoint_problem, log, checkpoint)
        if problem is not None:
            problems.append(problem)
        head = heads[upstream] = await asyncio.to_thread(log.head)
        position = checkpoint.position
        oldest = None if position >= head else await asyncio.to_thread(log.first_after, position)
        lag = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        upstreams.append(UpstreamStatus(upstream, position, head, lag))
    building = None
    if alias is not None and alias.building is not None:
        built = await side.checkpoints.positions(projection.name, alias.building)
        total = sum(heads.values()) or 1
        building = f"{100 * sum(built.get(u, 0) for u in heads) / total:.0f}%"
    code_version = projector_version(projection)
    return ProjectionStatus(
        name=projection.name,
        generation=generation,
        version=code_version if alias is None else alias.version,
        upstreams=upstreams,
        parked=await side.parked.count(projection.name, generation),
        state=describe_state(alias, code_version, building, problems),
    )


def publish(row: ProjectionStatus) -> None:
    """Set this process's projection gauges from one status row."""
    for upstream in row.upstreams:
        labels = (row.name, upstream.upstream)
        metrics.POSITION.labels(*labels).set(upstream.position)
        metrics.HEAD.labels(*labels).set(upstream.head)
        metrics.LAG_EVENTS.labels(*labels).set(max(0, upstream.head - upstream.position))
        metrics.LAG_SECONDS.labels(*labels).set(upstream.lag_seconds)
    metrics.PARKED.labels(row.name).set(row.parked)


async def refresh_gauges(
    side: ReadSide, projections: Sequence[Projection], every: float = REFRESH_EVERY
) -> None:
    """Publish every projection's status, then again every ``every`` seconds, until cancelled.

    An engine that does not answer leaves the last values in place (the readiness probe says
    which engine is down) and is tried again next round.
    """
    failing = False
    while True:
        try:
            for projection in projections:
                publish(await projection_status(side, projection))
        except Exception as error:
            if not failing:
                log.warning("projection gauges not refreshed: %s", error)
            failing = True
        else:
            failing = False
        await asyncio.sleep(every)
