"""CPU per request of a server process: /proc accounting for the total, py-spy for where it goes.

``CpuMeter`` reads a process's user+system time (every thread) at the start and the end of a
measured window. ``Profiler`` runs ``py-spy record`` on the process for the same window
(non-blocking: the target is never paused) and ``breakdown`` turns its collapsed stacks into
microseconds per request, by component.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class CpuMeter:
    pid: int
    begun: float = 0.0
    spent: float = 0.0

    def start(self) -> None:
        self.begun = cpu_seconds(self.pid)

    def stop(self) -> None:
        self.spent = cpu_seconds(self.pid) - self.begun


@dataclass
class Profiler:
    """``py-spy record`` of one process for ``seconds``, as collapsed stacks in ``output``."""

    pid: int
    seconds: float
    output: Path
    rate: int = 250
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.process = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(self.pid),
                "--duration",
                str(max(1, round(self.seconds))),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--output",
                str(self.output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self) -> None:
        """Until py-spy has written its profile; one that hangs (it can, on a starved machine)
        is killed, and that window has no breakdown."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.output.unlink(missing_ok=True)


# A leaf frame that waits (a socket, a lock, a condition): py-spy cannot always tell such a
# sample from CPU work, so it is left out of the breakdown.
WAITING = re.compile(
    r"^(\S+\.)?(wait|wait_c|select|poll|acquire|get|_wait_for_tstate_lock|sleep) \("
    r"|(Connection|Event|Condition|EpollSelector)\.\w+ \(.*(wait|select)"
)

# Inclusive components: a sample counts for the first rule (in this order) one of its frames
# matches. Frames read "Class.function (file:line)"; the first frame names the thread.
COMPONENTS: list[tuple[str, re.Pattern[str]]] = [
    ("committer thread", re.compile(r"group-commit")),
    ("thread-pool work (sync commands)", re.compile(r"AnyIO worker thread|ThreadPoolExecutor")),
    ("auth: session check (Redis)", re.compile(r"\b(is_active|user_for|_live) \(")),
    ("auth: JWT read", re.compile(r"JwtTokens\.read \(")),
    ("read-your-writes position (Redis)", re.compile(r"\b(remember_write|wrote) \(")),
    ("aggregate + group-commit hand-off", re.compile(r"\b(create_task_async|save_async) \(")),
    ("body parse + validation", re.compile(r"\b(request_body_to_args|_get_body|body|json) \(")),
    (
        "response model + serialisation",
        re.compile(r"\b(serialize_response|_prepare_response_content|render|_out) \("),
    ),
    ("route handler (rest)", re.compile(r"\b(create_task|change_task|create) \(")),
    ("dependency resolution (rest)", re.compile(r"\bsolve_dependencies \(")),
    ("the aggregate (domain)", re.compile(r"domain/|eventsourcing/domain")),
    ("Redis client (rest)", re.compile(r"redis/")),
]

# What no rule above took goes by its innermost frame's file: the self time of each layer.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    (
        "metrics + log middleware",
        re.compile(r"ops/observability\.py|prometheus_client|logging/|ops/logs"),
    ),
    ("request-id + body-limit middleware", re.compile(r"ops/http\.py")),
    ("pydantic", re.compile(r"pydantic")),
    ("JSON", re.compile(r"json/")),
    ("FastAPI/Starlette", re.compile(r"starlette/|fastapi/")),
    ("uvicorn HTTP protocol", re.compile(r"uvicorn/|httptools|h11")),
    ("asyncio event loop", re.compile(r"asyncio/|selectors\.py|contextvars")),
]


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    return stack.split(";"), int(count)


def breakdown(lines: Iterable[str]) -> Counter[str]:
    """Samples per component (see COMPONENTS); the rest is "other"; waits are left out."""
    samples: Counter[str] = Counter()
    for line in lines:
        if not line.strip():
            continue
        frames, count = _frames(line)
        if WAITING.search(frames[-1]):
            continue
        samples[_component(frames)] += count
    return samples


def _component(frames: list[str]) -> str:
    for name, pattern in COMPONENTS:
        if any(pattern.search(frame) for frame in frames):
            return name
    for name, pattern in LAYERS:
        if pattern.search(frames[-1]):
            return name
    return "other: " + frames[-1].rsplit(" (", 1)[-1].split(":")[0]


def report(title: str, profile: Path, cpu_us: float) -> list[str]:
    """Lines of µs per request by component, scaled so that they add up to ``cpu_us``."""
    if not profile.exists():
        return [f"  {title}: py-spy wrote no profile"]
    samples = breakdown(profile.read_text().splitlines())
    total = sum(samples.values()) or 1
    lines = [f"  {title}: {cpu_us:.0f} µs of CPU per request ({total} samples)"]
    rest = Counter({"other (each < 2%)": 0})
    for name, count in list(samples.items()):
        if name.startswith("other") and count / total < 0.02:
            rest["other (each < 2%)"] += samples.pop(name)
    for name, count in (samples + rest).most_common():
        lines.append(f"    {name:44} {cpu_us * count / total:7.0f} µs  {100 * count / total:5.1f}%")
    return lines
