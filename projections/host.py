"""The projector service: every projection of the process, kept current, following the aliases.

Every ``refresh`` seconds the host reads each projection's alias and runs one runner per
generation the alias says to tail (the live one, unless an in-place rebuild paused it, plus
retiring ones until they are due). So a blue/green switch made by another process is picked
up without a gap: the rebuilding process keeps tailing the new generation through the grace
period, and the host starts tailing it within ``refresh`` seconds. Due retiring generations
are dropped here too. After each pass the host writes a heartbeat saying which alias epochs
it has seen and what it tails: that is how an in-place rebuild knows it has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from projections.aliases import Alias, AliasRegistry
from projections.checkpoints import CheckpointStore, checkpoints_of
from projections.envelope import Projection
from projections.log import NotificationLog
from projections.parked import ParkedEvents
from projections.runner import Pacing, ProjectionRunner, is_transient

log = logging.getLogger(__name__)

RESTART_MIN = 1.0
RESTART_MAX = 30.0
# A worker without a heartbeat for this long is taken for dead (rebuilds stop waiting for it,
# retiring generations it tailed may be dropped). Stopping a runner takes at most
# STOP_TIMEOUT, with heartbeats meanwhile, so a slow stop never looks like a dead worker.
STALE_WORKER = 10.0
STOP_TIMEOUT = 5.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def projector_version(projection: Projection) -> int:
    return projection.projector(1).version


@dataclass
class _Running:
    runner: ProjectionRunner
    stop: asyncio.Event
    task: asyncio.Task[None]
    started: float


class ProjectionHost:
    """Runs the tailed generations of every projection in one process until stopped."""

    def __init__(
        self,
        projections: Sequence[Projection],
        logs: Mapping[str, NotificationLog],
        checkpoints: CheckpointStore,
        parked: ParkedEvents,
        aliases: AliasRegistry,
        *,
        pacing: Pacing | None = None,
        refresh: float = 0.5,
        worker: str | None = None,
        stop_timeout: float = STOP_TIMEOUT,
        stale_worker: float = STALE_WORKER,
    ) -> None:
        if stop_timeout >= stale_worker:
            raise ValueError("stop_timeout must be shorter than stale_worker")
        names = [p.name for p in projections]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names must be unique: {names}")
        self.projections = {p.name: p for p in projections}
        self.logs = logs
        self.checkpoints = checkpoints
        self.parked = parked
        self.aliases = aliases
        self.pacing = pacing or Pacing()
        self.refresh = refresh
        self.worker = worker or worker_id()
        self._running: dict[tuple[str, int], _Running] = {}
        self._failures: dict[tuple[str, int], tuple[int, float]] = {}  # count, retry at
        self.stop_timeout = stop_timeout
        self.stale_worker = stale_worker
        self._epochs: dict[str, int] = {}  # alias epochs of the last heartbeat

    def tailing(self) -> list[tuple[str, int]]:
        return sorted(self._running)

    def runner(self, name: str, generation: int) -> ProjectionRunner | None:
        running = self._running.get((name, generation))
        return None if running is None else running.runner

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.reconcile()
                except Exception as exc:
                    # The alias store is down: keep tailing what runs, try again shortly.
                    if not is_transient(exc):
                        log.exception("projector host: reconcile failed")
                    else:
                        log.warning("projector host: aliases unavailable (%s)", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.refresh)
        finally:
            for key in list(self._running):
                await self._stop(key)
            with contextlib.suppress(Exception):
                await self.aliases.leave(self.worker)

    async def reconcile(self) -> None:
        """One pass: read aliases, stop and start runners to match, drop due generations."""
        now = datetime.now(UTC)
        aliases: dict[str, Alias] = {}
        for name, projection in self.projections.items():
            alias = await self.aliases.get(name)
            if alias is None:
                alias = await self.aliases.ensure(name, projector_version(projection))
            aliases[name] = alias
        wanted = {
            (name, generation): generation == alias.generation
            for name, alias in aliases.items()
            for generation in alias.tailed(now)
        }
        for key in [k for k in self._running if k not in wanted]:
            await self._stop(key)
        for key, live in wanted.items():
            self._reap(key)
            running = self._running.get(key)
            if running is None and self._may_start(key):
                running = self._start(key, live)
            if running is not None and running.runner.live != live:
                running.runner.live = live
                if live:
                    await running.runner.report_parked()
        self._epochs = {name: alias.epoch for name, alias in aliases.items()}
        await self._heartbeat()
        for name, alias in aliases.items():
            for retiring in alias.retiring:
                if retiring.drop_after > now or (name, retiring.generation) in self._running:
                    continue
                if await tailed_elsewhere(
                    self.aliases, name, retiring.generation, self.worker, self.stale_worker
                ):
                    continue  # another projector process still tails it: next pass
                await drop_generation(
                    self.projections[name],
                    retiring.generation,
                    self.checkpoints,
                    self.parked,
                    self.aliases,
                )

    async def _heartbeat(self, stopping: tuple[str, int] | None = None) -> None:
        tailing = [*self._running, *([stopping] if stopping else [])]
        await self.aliases.heartbeat(
            self.worker, self._epochs, [f"{name}:{generation}" for name, generation in tailing]
        )

    def _start(self, key: tuple[str, int], live: bool) -> _Running:
        name, generation = key
        runner = ProjectionRunner(
            self.projections[name],
            generation,
            self.logs,
            self.checkpoints,
            self.parked,
            pacing=self.pacing,
            live=live,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop), name=f"projection-{name}-v{generation}")
        running = _Running(runner, stop, task, time.monotonic())
        self._running[key] = running
        log.info("tailing %s v%d%s", name, generation, " (live)" if live else "")
        return running

    def _may_start(self, key: tuple[str, int]) -> bool:
        failure = self._failures.get(key)
        return failure is None or time.monotonic() >= failure[1]

    def _reap(self, key: tuple[str, int]) -> None:
        """A runner that died is restarted later, with back-off: it resumes at its checkpoint."""
        running = self._running.get(key)
        if running is None or not running.task.done():
            return
        del self._running[key]
        error = None if running.task.cancelled() else running.task.exception()
        count = self._failures.get(key, (0, 0.0))[0]
        if time.monotonic() - running.started > 2 * RESTART_MAX:
            count = 0
        delay = min(RESTART_MAX, RESTART_MIN * 2**count)
        self._failures[key] = (count + 1, time.monotonic() + delay)
        log.error("%s v%d stopped (%r); restarting in %.0fs", *key, error, delay)

    async def _stop(self, key: tuple[str, int]) -> None:
        running = self._running.pop(key)
        running.stop.set()
        # Still tailing until the runner returns: say so, or a rebuild waiting for this
        # worker would take its silence for death and reset under a live writer.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_timeout
        while not running.task.done():
            left = deadline - loop.time()
            if left <= 0:
                running.task.cancel()
                break
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(running.task), min(left, self.refresh))
            if not running.task.done():
                with contextlib.suppress(Exception):
                    await self._heartbeat(stopping=key)
        if not running.task.cancelled() and running.task.done() and running.task.exception():
            log.warning("%s v%d ended with %r", *key, running.task.exception())
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running.task
        if running.runner.live:
            running.runner.forget_metrics()
        log.info("stopped tailing %s v%d", *key)


async def drop_generation(
    projection: Projection,
    generation: int,
    checkpoints: CheckpointStore,
    parked: ParkedEvents,
    aliases: AliasRegistry,
) -> None:
    """Remove a retired generation: data first, bookkeeping last, so a crash just repeats it."""
    await projection.drop(generation)
    await checkpoints_of(projection, checkpoints).reset(projection.name, generation)
    await parked.forget(projection.name, generation)
    await aliases.retired(projection.name, generation)
    log.info("dropped %s v%d", projection.name, generation)


async def tailed_elsewhere(
    aliases: AliasRegistry, name: str, generation: int, me: str, stale_worker: float
) -> bool:
    """Whether a projector process other than ``me`` has said lately that it tails it."""
    since = datetime.now(UTC) - timedelta(seconds=stale_worker)
    tag = f"{name}:{generation}"
    return any(w.id != me and tag in w.tailing for w in await aliases.workers(since))
