"""``taskledger projections status`` / ``projections rebuild NAME|--all [--in-place]``.

The read side, its engines and rich are imported by the commands that use them, not with the
CLI: every ``taskledger`` process (each child of ``up``) would pay for them at start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ops.cli.environment import (
    EXIT_REFUSED,
    console,
    exit_on_invalid_setting,
    operator_settings,
    refuse,
)

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn, TaskID
    from rich.table import Table

    from ops.projections import ReadSide
    from ops.settings import Settings
    from projections.aliases import Alias
    from projections.envelope import Projection
    from projections.rebuild import Phase, Rebuilt
    from projections.runner import Progress as RunnerProgress

app = typer.Typer(
    help="Status of the read models, and blue/green or in-place rebuilds.",
    no_args_is_help=True,
)


T = TypeVar("T")


def _run_or_exit(settings: Settings, work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    from projections.aliases import AliasConflictError
    from projections.rebuild import RebuildStuckError
    from projections.runner import first_error

    with exit_on_invalid_setting():
        try:
            try:
                return asyncio.run(work(settings))
            except BaseExceptionGroup as group:
                raise first_error(group) from None
        except (AliasConflictError, RebuildStuckError) as exc:
            raise refuse(str(exc), EXIT_REFUSED) from None


# ----------------------------------------------------------------------------------- status


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


def _state(
    alias: Alias | None, code_version: int, building: str | None, problems: Sequence[str] = ()
) -> str:
    from projections.aliases import AliasState

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
    from projections.host import projector_version
    from projections.log import checkpoint_problem

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
        state=_state(alias, code_version, building, problems),
    )


def status_table(rows: Sequence[ProjectionStatus]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="projections", title_justify="left", show_lines=True)
    for column, justify in [
        ("projection", "left"),
        ("generation", "right"),
        ("upstream", "left"),
        ("position", "right"),
        ("head", "right"),
        ("lag (events)", "right"),
        ("lag (s)", "right"),
        ("parked", "right"),
        ("state", "left"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        lines = row.upstreams
        table.add_row(
            Text(row.name),
            f"g{row.generation} · v{row.version}",
            "\n".join(u.upstream for u in lines),
            "\n".join(str(u.position) for u in lines),
            "\n".join(str(u.head) for u in lines),
            "\n".join(str(max(0, u.head - u.position)) for u in lines),
            "\n".join(f"{u.lag_seconds:.1f}" for u in lines),
            str(row.parked),
            Text(row.state),
        )
    return table


async def _status(settings: Settings) -> list[ProjectionStatus]:
    from ops.projections import open_read_side

    async with open_read_side(settings) as side:
        return [await projection_status(side, p) for p in side.projections()]


@app.command("status")
def status() -> None:
    """One row per projection: generation, position per upstream, head, lag, parked, state."""
    from ops.logs import configure_logging

    settings = operator_settings()
    configure_logging("WARNING", json_lines=False)
    rows = _run_or_exit(settings, _status)
    out = console()
    if not rows:
        out.print("no projections are registered (ops/projections.py PROJECTIONS)")
        return
    out.print(status_table(rows))


# ---------------------------------------------------------------------------------- rebuild


def rate_column() -> ProgressColumn:
    """Events (log positions) per second, as rich measures them."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.speed
            shown = "-" if speed is None else f"{speed:,.0f} ev/s"
            return Text(shown, style="progress.data.speed")

    return RateColumn()


class RebuildDisplay:
    """One progress bar per projection over the sum of its upstream positions."""

    def __init__(self, progress: Progress, projections: Sequence[Projection]) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {
            p.name: progress.add_task(p.name, total=None, phase="starting") for p in projections
        }
        self.positions: dict[str, dict[str, tuple[int, int]]] = {p.name: {} for p in projections}

    def on_progress(self, event: RunnerProgress) -> None:
        upstreams = self.positions[event.projection]
        upstreams[event.upstream] = (event.position, event.head)
        self.progress.update(
            self.tasks[event.projection],
            completed=sum(p for p, _ in upstreams.values()),
            total=sum(h for _, h in upstreams.values()) or None,
        )

    def on_phase(self, phase: Phase) -> None:
        self.progress.update(
            self.tasks[phase.projection], phase=f"g{phase.generation} {phase.step}"
        )


def choose(projections: Sequence[Projection], name: str | None, every: bool) -> list[Projection]:
    if every == (name is not None):
        raise refuse("give a projection NAME or --all (not both)", EXIT_REFUSED)
    if every:
        return list(projections)
    found = [p for p in projections if p.name == name]
    if not found:
        known = ", ".join(p.name for p in projections) or "none are registered"
        raise refuse(f"unknown projection {name!r} (known: {known})", EXIT_REFUSED)
    return found


async def _rebuild(
    settings: Settings, name: str | None, every: bool, in_place: bool
) -> list[Rebuilt]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ops.projections import open_read_side

    async with open_read_side(settings) as side:
        chosen = choose(side.projections(), name, every)
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            rate_column(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[phase]}"),
            console=Console(stderr=True),
        )
        with progress:
            display = RebuildDisplay(progress, chosen)
            rebuild = side.rebuild(on_progress=display.on_progress, on_phase=display.on_phase)
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(rebuild.in_place(p) if in_place else rebuild.blue_green(p))
                    for p in chosen
                ]
        return [task.result() for task in tasks]


@app.command("rebuild")
def rebuild(
    name: Annotated[str | None, typer.Argument(help="The projection to rebuild.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Rebuild every projection.")] = False,
    in_place: Annotated[
        bool,
        typer.Option("--in-place", help="Stop-the-world: empty and refill the live generation."),
    ] = False,
) -> None:
    """Blue/green: build the next generation while the live one serves, switch, drop the old."""
    from ops.logs import configure_logging

    settings = operator_settings()
    configure_logging("WARNING", json_lines=False)
    results = _run_or_exit(settings, lambda s: _rebuild(s, name, every, in_place))
    out = console()
    for done in results:
        how = "rebuilt in place" if done.replaced is None else f"replaced g{done.replaced}"
        resumed = ", resumed an interrupted rebuild" if done.resumed else ""
        out.print(
            f"{done.projection}: g{done.generation} is live ({how}{resumed}), "
            f"{done.parked} parked event(s)"
        )
