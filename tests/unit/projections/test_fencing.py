"""An in-place rebuild fences off a runner that is still writing the generation it resets."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from projections.checkpoints import InMemoryCheckpointStore, StaleCheckpointError
from projections.envelope import Envelope
from projections.parked import InMemoryParkedEvents
from projections.runner import Pacing, ProjectionRunner
from tests.unit.projections.test_runner_properties import OneProjector, record


@dataclass
class Slow:
    """Holds its first batch until released: the runner is mid-write when the reset comes."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    name: str = "memory"
    version: int = 1
    upstreams: Sequence[str] = ("Identity", "Tasks")
    topics: Sequence[str] = ()

    async def start(self) -> None:
        return None

    async def apply(self, batch: Sequence[Envelope]) -> None:
        if batch[0].application == "Tasks":
            self.entered.set()
            await self.release.wait()


async def test_a_stale_runners_advance_after_a_reset_does_not_move_the_checkpoint() -> None:
    recorded = record([("create", i, 0) for i in range(5)])
    checkpoints = InMemoryCheckpointStore()
    slow = Slow()
    stale = ProjectionRunner(
        OneProjector(slow), 1, recorded.logs(), checkpoints, InMemoryParkedEvents(), pacing=Pacing()
    )
    task = asyncio.create_task(stale.catch_up())
    await slow.entered.wait()
    await checkpoints.reset("memory", 1)  # the in-place rebuild gave up waiting for it
    slow.release.set()
    with pytest.raises(StaleCheckpointError):
        await task
    assert await checkpoints.position("memory", 1, "Tasks") == 0
