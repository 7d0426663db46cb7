"""A small process supervisor: start children stage by stage, watch them, stop them in reverse.

The children of one stage start together and are waited for together (our own processes
spend seconds importing; nothing gains from doing that one after the other); a stage starts
only once the one before it is ready (the engines before the processes that use them).

It is what keeps ``taskledger up`` one process tree: SIGINT or SIGTERM stops every child
cleanly, and a child that dies on its own takes the whole tree down with a message naming it,
rather than leaving a half-working system behind.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from ops.engines import Daemon, EngineFailedError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequestedError(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class ChildExitedError(Exception):
    """A child stopped although nobody asked it to."""

    def __init__(self, child: Daemon, status: int) -> None:
        how = (
            f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited ({status})"
        )
        super().__init__(f"{child.name} {how} unexpectedly; see {child.log_path}")


@dataclass
class Supervisor:
    stages: Sequence[Sequence[Daemon]]
    say: Callable[[str], None]
    poll_interval: float = 0.2
    started: list[list[Daemon]] = field(default_factory=list, init=False)
    _stopping: bool = field(default=False, init=False)

    def run(self, on_ready: Callable[[], None]) -> int:
        """Start, watch until a signal or a death, stop; 0 for a requested stop, else 1."""
        previous = {sig: signal.signal(sig, self._interrupt) for sig in STOP_SIGNALS}
        status = 1
        try:
            for stage in self.stages:
                # Listed before they start, so a signal during their start still stops them.
                self.started.append([])
                for child in stage:
                    self.started[-1].append(child)
                    child.spawn()
                for child in stage:
                    child.wait_ready()
                    pid = child.process.pid if child.process else "?"
                    self.say(f"{child.name} started (pid {pid})")
            on_ready()
            self._watch()
        except StopRequestedError as stop:
            self.say(f"{stop} received, stopping")
            status = 0
        except (EngineFailedError, ChildExitedError) as failure:
            self._stopping = True  # a signal now must not interrupt the stop below
            self.say(str(failure))
        finally:
            self._stopping = True
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        # A second signal while stopping must not abandon the children half-stopped.
        if not self._stopping:
            self._stopping = True
            raise StopRequestedError(signum)

    def _watch(self) -> None:
        while True:
            for stage in self.started:
                for child in stage:
                    status = child.process.poll() if child.process else -signal.SIGKILL
                    if status is not None:
                        raise ChildExitedError(child, status)
            time.sleep(self.poll_interval)

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
