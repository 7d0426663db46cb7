"""Rebuilding a projection from position 0: blue/green by default, stop-the-world on request.

Blue/green: allocate generation N+1, fill it from the start of every upstream while N keeps
being served and tailed, switch the alias in one write once N+1 has reached the heads, keep
tailing N+1 here through the grace period (the projector service picks it up within its
refresh interval), then drop N. Readers see N or N+1, never neither.

In place: pause the live generation (the projector service stops tailing it and says so in
its heartbeat), drop its data and checkpoints, refill it, resume. Reads see a partial model
meanwhile: that is what stop-the-world means.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from projections.aliases import ALIAS_CACHE_TTL, AliasRegistry
from projections.checkpoints import CheckpointStore, checkpoints_of
from projections.envelope import Projection
from projections.host import STALE_WORKER, drop_generation, projector_version, tailed_elsewhere
from projections.log import NotificationLog
from projections.parked import ParkedEvents
from projections.runner import Pacing, Progress, ProjectionRunner

log = logging.getLogger(__name__)


class RebuildStuckError(Exception):
    """A projector process did not let go of the generation an in-place rebuild needs."""


@dataclass(frozen=True, slots=True)
class Rebuilt:
    projection: str
    generation: int  # now live
    replaced: int | None  # the generation dropped (None in place)
    resumed: bool  # an interrupted rebuild was continued
    parked: int  # events parked by the new generation


@dataclass(frozen=True, slots=True)
class Phase:
    """What the rebuild of one projection is doing, for a progress display."""

    projection: str
    generation: int
    step: str  # "building", "switched", "dropped", "waiting for workers", "done"


class Rebuild:
    def __init__(
        self,
        logs: Mapping[str, NotificationLog],
        checkpoints: CheckpointStore,
        parked: ParkedEvents,
        aliases: AliasRegistry,
        *,
        pacing: Pacing | None = None,
        grace: float = 10.0,
        host_refresh: float = 0.5,
        stale_worker: float = STALE_WORKER,
        on_progress: Callable[[Progress], None] | None = None,
        on_phase: Callable[[Phase], None] | None = None,
    ) -> None:
        # Readers cache the alias for ALIAS_CACHE_TTL; the service notices a switch within
        # host_refresh. The old generation must outlive both.
        self.grace = max(grace, ALIAS_CACHE_TTL + 2 * host_refresh)
        self.logs = logs
        self.checkpoints = checkpoints
        self.parked = parked
        self.aliases = aliases
        self.pacing = pacing or Pacing()
        self.host_refresh = host_refresh
        self.stale_worker = stale_worker
        self.on_progress = on_progress
        self.on_phase = on_phase

    def _phase(self, projection: Projection, generation: int, step: str) -> None:
        if self.on_phase is not None:
            self.on_phase(Phase(projection.name, generation, step))

    def _runner(self, projection: Projection, generation: int) -> ProjectionRunner:
        return ProjectionRunner(
            projection,
            generation,
            self.logs,
            self.checkpoints,
            self.parked,
            pacing=self.pacing,
            on_progress=self.on_progress,
        )

    async def blue_green(self, projection: Projection) -> Rebuilt:
        name = projection.name
        before = await self.aliases.get(name)
        alias = await self.aliases.begin_rebuild(name, projector_version(projection))
        assert alias.building is not None
        target, old = alias.building, alias.generation
        resumed = before is not None and before.building == target
        self._phase(projection, target, "building")
        runner = self._runner(projection, target)
        await runner.catch_up()
        drop_after = datetime.now(UTC) + timedelta(seconds=self.grace)
        await self.aliases.switch(name, to=target, drop_after=drop_after)
        self._phase(projection, target, "switched")
        log.info("%s: generation %d is live (was %d)", name, target, old)
        # Keep the new live generation current until the service has surely taken over, and
        # stop only after the service has stopped tailing the old one (it is due then).
        stop = asyncio.Event()
        tail = asyncio.create_task(runner.run(stop))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(tail), self.grace + 2 * self.host_refresh)
        finally:
            stop.set()
            await tail
        await self.drop_due(projection)
        self._phase(projection, target, "done")
        return Rebuilt(name, target, old, resumed, await self.parked.count(name, target))

    async def drop_due(self, projection: Projection) -> None:
        """Drop every retired generation of ``projection`` whose grace is over."""
        alias = await self.aliases.get(projection.name)
        if alias is None:
            return
        now = datetime.now(UTC)
        for retiring in alias.retiring:
            if retiring.drop_after <= now:
                if not await self._let_go(projection.name, retiring.generation):
                    continue  # a projector process still tails it; it drops it when done
                await drop_generation(
                    projection, retiring.generation, self.checkpoints, self.parked, self.aliases
                )
                self._phase(projection, retiring.generation, "dropped")

    async def in_place(self, projection: Projection) -> Rebuilt:
        name = projection.name
        version = projector_version(projection)
        await self.aliases.ensure(name, version)
        alias = await self.aliases.pause(name)
        generation = alias.generation
        self._phase(projection, generation, "waiting for workers")
        await self._wait_for_workers(name, generation, alias.epoch)
        await projection.drop(generation)
        # Bumps the epoch too: a writer we waited for in vain cannot advance past the reset.
        await checkpoints_of(projection, self.checkpoints).reset(name, generation)
        await self.parked.forget(name, generation)
        self._phase(projection, generation, "building")
        await self._runner(projection, generation).catch_up()
        await self.aliases.resume(name, version)
        self._phase(projection, generation, "done")
        return Rebuilt(name, generation, None, False, await self.parked.count(name, generation))

    async def _let_go(self, name: str, generation: int) -> bool:
        """Wait a little for projector processes to stop tailing a due generation."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stale_worker
        while await tailed_elsewhere(self.aliases, name, generation, "", self.stale_worker):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(min(0.1, self.host_refresh / 2))
        return True

    async def _wait_for_workers(self, name: str, generation: int, epoch: int) -> None:
        """Until every live projector process has seen the pause and stopped tailing."""
        tag = f"{name}:{generation}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 6 * self.stale_worker
        while True:
            since = datetime.now(UTC) - timedelta(seconds=self.stale_worker)
            busy = [
                w.id
                for w in await self.aliases.workers(since)
                if name in w.epochs and (w.epochs[name] < epoch or tag in w.tailing)
            ]
            if not busy:
                return
            if loop.time() > deadline:
                raise RebuildStuckError(f"{name}: projector(s) {', '.join(busy)} still tail it")
            await asyncio.sleep(min(0.1, self.host_refresh / 2))
