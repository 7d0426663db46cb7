"""A small process supervisor: start children in order, watch them, stop them in reverse.

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
    children: Sequence[Daemon]
    say: Callable[[str], None]
    poll_interval: float = 0.2
    started: list[Daemon] = field(default_factory=list, init=False)
    _stopping: bool = field(default=False, init=False)

    def run(self, on_ready: Callable[[], None]) -> int:
        """Start, watch until a signal or a death, stop; 0 for a requested stop, else 1."""
        previous = {sig: signal.signal(sig, self._interrupt) for sig in STOP_SIGNALS}
        status = 1
        try:
            for child in self.children:
                # Listed before it starts, so a signal during its start still stops it.
                self.started.append(child)
                child.start()
                self.say(
                    f"{child.name} started (pid {child.process.pid if child.process else '?'})"
                )
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
            for child in self.started:
                process = child.process
                if process is None or process.poll() is not None:
                    raise ChildExitedError(
                        child, process.returncode if process else -signal.SIGKILL
                    )
            time.sleep(self.poll_interval)

    def _stop_all(self) -> None:
        for child in reversed(self.started):
            if child.alive():
                child.stop()
                self.say(f"{child.name} stopped")
        self.started.clear()
