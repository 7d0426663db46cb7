"""A small process supervisor: start children stage by stage, heal them, stop them in reverse.

The children of one stage start together and are waited for together (our own processes
spend seconds importing; nothing gains from doing that one after the other); a stage starts
only once the one before it is ready (the engines before the processes that use them).

It is what keeps ``taskledger up`` one process tree that heals itself, as Kubernetes does its
pods: a child that dies on its own is started again, the same command on the same port and
data, after an exponential back-off (also when it dies during its first start); one that
keeps dying (``max_crashes`` within ``window``)
takes the whole tree down with a message naming it and its log, rather than flapping for
ever. SIGINT or SIGTERM stops every child cleanly. The restarts are counted in the
supervisor's own Prometheus registry, which ``serve_metrics`` exposes.
"""

from __future__ import annotations

import select
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import HTTPServer
from types import FrameType

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import MetricsHandler

from ops.engines import Daemon, EngineFailedError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequestedError(BaseException):
    """Raised by the signal handler wherever the supervisor is; a BaseException (as
    KeyboardInterrupt is) so that no ``except Exception`` on the way, such as the metrics
    server's handler of a failed scrape, can swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class CrashLoopError(Exception):
    """A child died too often to be worth starting again."""

    def __init__(self, child: Daemon, crashes: int, window: float) -> None:
        super().__init__(
            f"{child.name} crashed {crashes} times within {window:.0f}s; stopping everything; "
            f"see {child.log_path}"
        )


def how_it_ended(status: int) -> str:
    return f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited ({status})"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Back-off doubles from ``first_delay`` up to ``max_delay`` with each recent crash."""

    first_delay: float = 0.5
    max_delay: float = 8.0
    max_crashes: int = 5
    window: float = 60.0
    # How long a child, started or restarted, may take to answer its readiness probe.
    ready_timeout: float = 60.0

    def delay(self, recent_crashes: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2 ** max(0, recent_crashes - 1)))


@dataclass
class SupervisorMetrics:
    """The supervisor's own registry: restarts and liveness per child."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.restarts = Counter(
            "taskledger_up_child_restarts",
            "Children of taskledger up started again after dying on their own.",
            ["child"],
            registry=self.registry,
        )
        self.crashes = Counter(
            "taskledger_up_child_crashes",
            "Children of taskledger up that died without being asked to.",
            ["child"],
            registry=self.registry,
        )
        self.up = Gauge(
            "taskledger_up_child_up",
            "1 while the child runs and answered its readiness probe, else 0.",
            ["child"],
            registry=self.registry,
        )


class MetricsEndpoint:
    """``/metrics`` of the supervisor, answered between two polls: no thread, so children
    can still be forked safely (``Daemon.spawn`` runs a preexec function)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self.server = HTTPServer((host, port), MetricsHandler.factory(registry))
        self.server.timeout = 0

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, answering a scrape if one comes."""
        readable, _, _ = select.select([self.server.socket], [], [], seconds)
        if readable:
            self.server.handle_request()

    def close(self) -> None:
        self.server.server_close()


@dataclass
class _Healing:
    """What the supervisor knows of one child between its deaths and restarts."""

    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None  # waiting out its back-off
    starting_since: float | None = None  # restarted, not yet ready


@dataclass
class Supervisor:
    stages: Sequence[Sequence[Daemon]]
    say: Callable[[str], None]
    poll_interval: float = 0.2
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    metrics: SupervisorMetrics = field(default_factory=SupervisorMetrics)
    # Where the supervisor serves its own /metrics (host, port), if anywhere.
    metrics_address: tuple[str, int] | None = None
    started: list[list[Daemon]] = field(default_factory=list, init=False)
    _stopping: bool = field(default=False, init=False)
    _healing: dict[int, _Healing] = field(default_factory=dict, init=False)

    def run(self, on_ready: Callable[[], None]) -> int:
        """Start, heal until a signal or a crash loop, stop; 0 for a requested stop, else 1."""
        previous = {sig: signal.signal(sig, self._interrupt) for sig in STOP_SIGNALS}
        endpoint = (
            MetricsEndpoint(*self.metrics_address, self.metrics.registry)
            if self.metrics_address
            else None
        )
        status = 1
        try:
            for stage in self.stages:
                # Listed before they start, so a signal during their start still stops them.
                self.started.append([])
                for child in stage:
                    self.started[-1].append(child)
                    self.metrics.restarts.labels(child.name)  # the series exists at 0
                    self.metrics.crashes.labels(child.name)
                    child.spawn()
                for child in stage:
                    self._until_ready(child)
                    self.metrics.up.labels(child.name).set(1)
                    pid = child.process.pid if child.process else "?"
                    self.say(f"{child.name} started (pid {pid})")
            on_ready()
            self._watch(endpoint.wait if endpoint else time.sleep)
        except StopRequestedError as stop:
            self.say(f"{stop} received, stopping")
            status = 0
        except (EngineFailedError, CrashLoopError) as failure:
            self._stopping = True  # a signal now must not interrupt the stop below
            self.say(str(failure))
        finally:
            self._stopping = True
            self._stop_all()
            if endpoint is not None:
                endpoint.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _until_ready(self, child: Daemon) -> None:
        """Wait for a child's first start; one that dies on the way is healed as later on
        (a start can lose a race, say over a new database's schema), a crash loop ends it."""
        while True:
            try:
                child.wait_ready(self.policy.ready_timeout)
                return
            except EngineFailedError as failure:
                process = child.process
                status = process.poll() if process is not None else None
                if status is None:
                    raise  # not ready in time: waiting more would not help
                healing = self._healing.setdefault(id(child), _Healing())
                self._died(child, healing, status, time.monotonic(), failure)
                assert healing.restart_at is not None
                time.sleep(max(0.0, healing.restart_at - time.monotonic()))
                healing.restart_at = None
                self.metrics.restarts.labels(child.name).inc()
                child.spawn()

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        # A second signal while stopping must not abandon the children half-stopped.
        if not self._stopping:
            self._stopping = True
            raise StopRequestedError(signum)

    def _watch(self, pause: Callable[[float], None]) -> None:
        while True:
            for stage in self.started:
                for child in stage:
                    self._tend(child, time.monotonic())
            pause(self.poll_interval)

    def _tend(self, child: Daemon, now: float) -> None:
        """One look at one child: notice a death, restart when its back-off is over."""
        healing = self._healing.setdefault(id(child), _Healing())
        if healing.restart_at is not None:
            if now >= healing.restart_at:
                healing.restart_at = None
                healing.starting_since = now
                self.metrics.restarts.labels(child.name).inc()
                child.spawn()
            return
        status = child.process.poll() if child.process else -signal.SIGKILL
        if status is not None:
            self._died(child, healing, status, now)
            return
        if healing.starting_since is not None:
            if child.ready():
                healing.starting_since = None
                self.metrics.up.labels(child.name).set(1)
                pid = child.process.pid if child.process else "?"
                self.say(f"{child.name} restarted (pid {pid})")
            elif now - healing.starting_since > self.policy.ready_timeout:
                child.stop()  # hung in its start: as good as dead
                self._died(child, healing, -signal.SIGKILL, now)

    def _died(
        self,
        child: Daemon,
        healing: _Healing,
        status: int,
        now: float,
        failure: EngineFailedError | None = None,
    ) -> None:
        self.metrics.up.labels(child.name).set(0)
        self.metrics.crashes.labels(child.name).inc()
        healing.starting_since = None
        healing.crashes.append(now)
        while healing.crashes and now - healing.crashes[0] > self.policy.window:
            healing.crashes.popleft()
        recent = len(healing.crashes)
        if recent >= self.policy.max_crashes:
            self.say(str(failure) if failure else f"{child.name} {how_it_ended(status)}")
            raise CrashLoopError(child, recent, self.policy.window)
        delay = self.policy.delay(recent)
        healing.restart_at = now + delay
        self.say(
            f"{child.name} {how_it_ended(status)} unexpectedly; restarting it in {delay:g}s "
            f"(crash {recent}/{self.policy.max_crashes} within {self.policy.window:.0f}s; "
            f"see {child.log_path})"
        )

    def _stop_all(self) -> None:
        """Stage by stage in reverse; a stage's children are asked together, then waited for."""
        for stage in reversed(self.started):
            running = [child for child in reversed(stage) if child.alive()]
            for child in running:
                child.terminate()
            for child in reversed(stage):
                was_running = any(child is other for other in running)
                child.stop()
                if was_running:
                    self.say(f"{child.name} stopped")
        self.started.clear()
