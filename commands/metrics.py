"""Write-side metrics: commands by outcome, events appended by type (prometheus-client).

Labels stay bounded: ``command`` is a name from the code, ``outcome`` is ``ok``, the class name
of the domain error that refused the command, or ``error``; ``type`` is the event class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from eventsourcing.persistence import Recording
from prometheus_client import Counter, Histogram

from domain.errors import DomainError

COMMANDS = Counter(
    "taskledger_commands_total",
    "Commands handled, by command and outcome (ok, the refusing domain error, or error).",
    ["command", "outcome"],
)
GROUP_COMMIT_BATCH = Histogram(
    "taskledger_group_commit_commands",
    "Commands stored together in one event-store transaction by the group commit.",
    ["application"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
EVENTS_APPENDED = Counter(
    "taskledger_events_appended_total",
    "Events appended to the event store, by application and event type.",
    ["application", "type"],
)

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def counting(command: str) -> Iterator[None]:
    """Count one run of ``command`` by how it ended; the exception, if any, goes on."""
    try:
        yield
    except DomainError as exc:
        COMMANDS.labels(command, type(exc).__name__).inc()
        raise
    except BaseException:
        COMMANDS.labels(command, "error").inc()
        raise
    COMMANDS.labels(command, "ok").inc()


def counted(command: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a synchronous command handler so each call is counted by outcome."""

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        @wraps(handler)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with counting(command):
                return handler(*args, **kwargs)

        return run

    return decorate


def count_appended(application: str, recordings: Sequence[Recording[Any]]) -> None:
    """Called once per successful save, with what it stored."""
    for recording in recordings:
        EVENTS_APPENDED.labels(application, type(recording.domain_event).__qualname__).inc()
