"""Which failures the runner retries instead of parking, and its breaker for systemic ones."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

import pymongo.errors
import pytest
import redis.exceptions

from projections.checkpoints import InMemoryCheckpointStore
from projections.envelope import Envelope
from projections.parked import InMemoryParkedEvents
from projections.runner import Pacing, ProjectionRunner, RepeatedFailureError, is_transient
from tests.fixtures.projections import MemoryProjector
from tests.unit.projections.test_runner_properties import OneProjector, clean_pass, record

TRANSIENT: list[BaseException] = [
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'."),
    redis.exceptions.ResponseError("BUSY Redis is busy running a script."),
    redis.exceptions.ResponseError("MASTERDOWN Link with MASTER is down"),
    redis.exceptions.ResponseError("CLUSTERDOWN The cluster is down"),
    redis.exceptions.ResponseError("LOADING Redis is loading the dataset in memory"),
    redis.exceptions.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
    redis.exceptions.ResponseError(
        "Error running script (call to f_1): @user_script:9: -OOM command not allowed"
    ),
    redis.exceptions.ConnectionError("Connection refused"),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    pymongo.errors.AutoReconnect("connection closed"),
    pymongo.errors.ConnectionFailure("no route"),
    pymongo.errors.ServerSelectionTimeoutError("no primary"),
    pymongo.errors.NetworkTimeout("timed out"),
    pymongo.errors.ExecutionTimeout("operation exceeded time limit", 50),
    pymongo.errors.WriteConcernError("waiting for replication timed out", 64),
    pymongo.errors.BulkWriteError(
        {"writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "wtimeout"}]}
    ),
    pymongo.errors.BulkWriteError(
        {"writeErrors": [{"index": 0, "code": 10107, "errmsg": "not primary"}]}
    ),
    pymongo.errors.BulkWriteError(
        {"writeErrors": [{"index": 0, "code": 91, "errmsg": "shutdown in progress"}]}
    ),
    pymongo.errors.OperationFailure("not primary", 10107),
    pymongo.errors.OperationFailure(
        "stepped down", 11602, {"errorLabels": ["RetryableWriteError"], "code": 11602}
    ),
    pymongo.errors.OperationFailure("odd", 1, {"errorLabels": ["RetryableWriteError"]}),
    ConnectionResetError(errno.ECONNRESET, "reset"),
    OSError(errno.EHOSTUNREACH, "no route to host"),
    TimeoutError(),
]

PERMANENT: list[BaseException] = [
    redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
    redis.exceptions.ResponseError("ERR Error running script: attempt to compare nil"),
    pymongo.errors.BulkWriteError(
        {"writeErrors": [{"index": 0, "code": 11000, "errmsg": "duplicate key"}]}
    ),
    pymongo.errors.OperationFailure("bad $set", 9),
    pymongo.errors.DocumentTooLarge("too large"),
    FileNotFoundError(errno.ENOENT, "no such file"),
    PermissionError(errno.EACCES, "denied"),
    ValueError("bad event"),
    KeyError("title"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: f"{type(e).__name__}:{e}"[:60])
def test_failures_of_a_server_that_cannot_write_now_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: f"{type(e).__name__}:{e}"[:60])
def test_failures_of_the_event_or_the_code_are_not(error: BaseException) -> None:
    assert not is_transient(error)


@dataclass
class Broken:
    """Every Tasks event fails the same non-transient way for a while (say, a wrong credential
    the server reports as an ordinary error)."""

    inner: MemoryProjector
    healed_after: int  # calls
    poison: frozenset[int] = frozenset()  # positions that always fail, another way
    calls: int = 0
    name: str = "memory"
    version: int = 1
    upstreams: Sequence[str] = ("Identity", "Tasks")
    topics: Sequence[str] = ()

    async def start(self) -> None:
        return None

    async def apply(self, batch: Sequence[Envelope]) -> None:
        self.calls += 1
        if self.calls <= self.healed_after and batch[0].application == "Tasks":
            raise redis.exceptions.ResponseError("NOAUTH Authentication required.")
        if any(e.position in self.poison for e in batch):
            raise ValueError("poison")
        await self.inner.apply(batch)


async def test_a_run_of_identical_failures_backs_off_instead_of_parking_everything() -> None:
    recorded = record([("create", i, 0) for i in range(20)])
    state: dict[str, list[int]] = {}
    broken = Broken(MemoryProjector(state), healed_after=30)
    parked = InMemoryParkedEvents()
    runner = ProjectionRunner(
        OneProjector(broken),
        1,
        recorded.logs(),
        InMemoryCheckpointStore(),
        parked,
        pacing=Pacing(retry_min=0.001, retry_max=0.005, park_breaker=5),
    )
    await runner.catch_up()
    assert await parked.count("memory") == 0
    assert broken.calls > 30
    assert state == await clean_pass(recorded)


async def test_a_few_poison_events_are_still_parked() -> None:
    recorded = record([("create", i, 0) for i in range(8)])
    state: dict[str, list[int]] = {}
    broken = Broken(MemoryProjector(state), healed_after=0, poison=frozenset({2, 3}))
    parked = InMemoryParkedEvents()
    runner = ProjectionRunner(
        OneProjector(broken),
        1,
        recorded.logs(),
        InMemoryCheckpointStore(),
        parked,
        pacing=Pacing(batch_size=100, park_breaker=5),
    )
    await runner.catch_up()
    # Identity #2, Tasks #2 and #3: the rest applied.
    assert await parked.count("memory") == 3
    assert sum(len(v) for v in state.values()) == 8 + 2 - 3


def test_the_breaker_error_is_transient() -> None:
    assert is_transient(RepeatedFailureError("6 in a row"))
