"""The process tree of ``taskledger up``: embedded engines first, then our own processes.

``CHILDREN`` is the whole tree in start order (stopped in reverse), in two stages: the
engines start together, then, once they answer, our own processes together. Each entry says
how to start its process and which settings it gives the others (the URL of an engine). A
new process is one more entry here.

Every child's data lives under the data dir, so a second ``up`` resumes with everything.
Ports of the engines are remembered in ``<data dir>/ports.json`` and reused while free, so the
URLs in ``<data dir>/up.env`` stay the same from one run to the next. While ``up`` runs,
``<data dir>/up.json`` names its pid and the settings it gives its children: the operator
commands read it (``running_up``) to find the engines without any set-up.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import socket
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ops.engines import Daemon, embedded_redis, free_port, mongo_url_for, port_open, secantus
from ops.settings import Settings

LOOPBACK = "127.0.0.1"
MONGO_DATABASE = "taskledger"
# Start stages: the engines first, then our own processes, which connect to them.
ENGINES, PROCESSES = 0, 1

Env = Mapping[str, str]


@dataclass
class PortBook:
    """Loopback ports for the engines, remembered across runs and replaced when taken."""

    path: Path
    chosen: dict[str, int] = field(default_factory=dict, init=False)

    def port(self, name: str) -> int:
        if name not in self.chosen:
            remembered = self._remembered().get(name)
            self.chosen[name] = (
                remembered if remembered is not None and _bindable(remembered) else free_port()
            )
            self.path.write_text(json.dumps({**self._remembered(), **self.chosen}, indent=2))
        return self.chosen[name]

    def _remembered(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Plan:
    """One run of ``up``: where the data is, where the API listens, which ports engines use."""

    settings: Settings
    data_dir: Path
    host: str
    port: int
    ports: PortBook

    @classmethod
    def for_run(cls, settings: Settings, host: str, port: int) -> Plan:
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings, data_dir, host, port, PortBook(data_dir / "ports.json"))

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def url(self) -> str:
        return _http_url(self.host, self.port)

    @property
    def probe_host(self) -> str:
        """Where this machine reaches the API, also when it listens on every interface."""
        return {"0.0.0.0": LOOPBACK, "": LOOPBACK, "::": "::1"}.get(self.host, self.host)

    @property
    def probe_url(self) -> str:
        return _http_url(self.probe_host, self.port)


def _http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    # Given the plan and the environment every taskledger child gets, the process to run.
    daemon: Callable[[Plan, Env], Daemon]
    # Settings this child gives the others, e.g. the URL of the engine it runs.
    exports: Callable[[Plan], Env] = lambda plan: {}
    # Whether it runs at all: an engine whose URL is configured is not started.
    wanted: Callable[[Settings], bool] = lambda settings: True
    # Children of one stage start together; a stage starts once the one before it is ready.
    stage: int = PROCESSES


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness probe: GET answers 200."""
    parts = urlsplit(url)

    def probe() -> bool:
        connection = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port, timeout=1)
        try:
            connection.request("GET", parts.path or "/")
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    return probe


def our_module(module: str, env: Env) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run one of our modules in this interpreter.

    ``-P``: the child's working directory is not put first on sys.path, so a project with an
    ``ops/`` package of its own, where ``up`` was started, cannot stand in for ours. Our code is
    found where this process found it: installed, or (a checkout) through PYTHONPATH.
    """
    env = dict(env)
    root = Path(__file__).resolve().parent.parent
    installed = {Path(sysconfig.get_path(name)).resolve() for name in ("purelib", "platlib")}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return [sys.executable, "-P", "-m", module], env


def taskledger(
    plan: Plan, env: Env, name: str, args: Sequence[str], ready: Callable[[], bool]
) -> Daemon:
    """One of our own processes: this interpreter running the ``taskledger`` command."""
    argv, child_env = our_module("ops", env)
    return Daemon(
        name=name,
        argv=[*argv, *args],
        ready=ready,
        log_path=plan.logs / f"{name}.log",
        env=child_env,
    )


def _redis(plan: Plan, env: Env) -> Daemon:
    return embedded_redis(
        plan.data_dir / "redis", plan.ports.port("redis"), LOOPBACK, log_dir=plan.logs
    )


def _secantus(plan: Plan, env: Env) -> Daemon:
    # Durable like up's Redis: a killed document store keeps every write it acknowledged.
    return secantus(
        plan.data_dir / "mongo",
        plan.ports.port("secantusdb"),
        LOOPBACK,
        log_dir=plan.logs,
        sync_on_commit=True,
    )


def _api(plan: Plan, env: Env) -> Daemon:
    return taskledger(
        plan,
        env,
        "api",
        ["serve", "api", "--host", plan.host, "--port", str(plan.port)],
        http_ok(plan.probe_url + "/health/live"),
    )


def _smtp_sink(plan: Plan, env: Env) -> Daemon:
    port = plan.ports.port("smtp")
    argv, child_env = our_module("ops.smtp_sink", env)
    return Daemon(
        name="smtp-sink",
        argv=[
            *argv,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--dir",
            str(plan.data_dir / "mail"),
        ],
        ready=lambda: port_open(LOOPBACK, port),
        log_path=plan.logs / "smtp-sink.log",
        env=child_env,
    )


def _worker(name: str) -> Callable[[Plan, Env], Daemon]:
    """``taskledger serve NAME``, ready once its /metrics answers (on loopback only: nothing of
    a laptop run listens beyond this machine unless ``--host`` says so)."""

    def daemon(plan: Plan, env: Env) -> Daemon:
        port = plan.ports.port(f"{name}-metrics")
        return taskledger(
            plan,
            env,
            name,
            ["serve", name, "--metrics-port", str(port), "--metrics-host", LOOPBACK],
            http_ok(f"http://{LOOPBACK}:{port}/metrics"),
        )

    return daemon


CHILDREN: list[ChildSpec] = [
    ChildSpec(
        "redis",
        _redis,
        exports=lambda plan: {
            "TASKLEDGER_REDIS_URL": f"redis://{LOOPBACK}:{plan.ports.port('redis')}/0"
        },
        wanted=lambda settings: settings.redis_url is None,
        stage=ENGINES,
    ),
    ChildSpec(
        "secantusdb",
        _secantus,
        exports=lambda plan: {
            "TASKLEDGER_MONGO_URL": mongo_url_for(
                LOOPBACK, plan.ports.port("secantusdb"), MONGO_DATABASE
            )
        },
        wanted=lambda settings: settings.mongo_url is None,
        stage=ENGINES,
    ),
    ChildSpec(
        "smtp-sink",
        _smtp_sink,
        exports=lambda plan: {
            "TASKLEDGER_SMTP_URL": f"smtp://{LOOPBACK}:{plan.ports.port('smtp')}"
        },
        wanted=lambda settings: settings.smtp_url is None,
        stage=ENGINES,
    ),
    ChildSpec("api", _api),
    # The projections, the mail relay among them: events to read models and to the broker.
    ChildSpec("projector", _worker("projector")),
    ChildSpec("mailer", _worker("mailer")),
]


def running(plan: Plan, specs: Sequence[ChildSpec] | None = None) -> list[ChildSpec]:
    """The entries this run starts, in order."""
    return [spec for spec in (CHILDREN if specs is None else specs) if spec.wanted(plan.settings)]


def exported(plan: Plan, specs: Sequence[ChildSpec]) -> dict[str, str]:
    """The settings that point a taskledger process at this run's data dir and engines."""
    env = {"TASKLEDGER_DATA_DIR": str(plan.data_dir)}
    if plan.settings.jwt_secret is None and plan.settings.jwt_secret_file is None:
        # The secret generated into the data dir, shared by every process of this run.
        env["TASKLEDGER_JWT_SECRET_FILE"] = str(plan.data_dir / "secret.key")
    if "reset_url_base" not in plan.settings.model_fields_set:
        # The mailed link opens the reset page this run serves, whatever --host and --port say.
        env["TASKLEDGER_RESET_URL_BASE"] = plan.probe_url + "/reset-password"
    for spec in specs:
        env.update(spec.exports(plan))
    return env


def build_children(plan: Plan, specs: Sequence[ChildSpec]) -> list[list[Daemon]]:
    """The processes to run, grouped in start stages, in order."""
    env = {**os.environ, **exported(plan, specs)}
    stages: dict[int, list[Daemon]] = {}
    for spec in specs:
        stages.setdefault(spec.stage, []).append(spec.daemon(plan, env))
    return [stages[stage] for stage in sorted(stages)]


def write_env_file(plan: Plan, specs: Sequence[ChildSpec]) -> Path:
    """``<data dir>/up.env``: source it to point operator commands at the running engines."""
    path = plan.data_dir / "up.env"
    lines = [f"export {key}={shlex.quote(value)}\n" for key, value in exported(plan, specs).items()]
    path.write_text("".join(lines))
    return path


def remove_env_file(plan: Plan) -> None:
    with contextlib.suppress(FileNotFoundError):
        (plan.data_dir / "up.env").unlink()


DISCOVERY_FILE = "up.json"


def write_discovery_file(plan: Plan, specs: Sequence[ChildSpec]) -> Path:
    """``<data dir>/up.json``: this run's pid and engine settings, for the operator commands.

    Written whole then renamed into place, so a reader never sees half of it.
    """
    path = plan.data_dir / DISCOVERY_FILE
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    body = {"pid": os.getpid(), "url": plan.url, "settings": exported(plan, specs)}
    draft.write_text(json.dumps(body, indent=2))
    draft.replace(path)
    return path


def remove_discovery_file(plan: Plan) -> None:
    path = plan.data_dir / DISCOVERY_FILE
    with contextlib.suppress(FileNotFoundError, ValueError, OSError):
        # Only our own: never the file of an up that started after us on this data dir.
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def running_up(data_dir: Path) -> dict[str, str] | None:
    """The settings the ``up`` running on ``data_dir`` gives its children; None when none runs.

    A file left by an ``up`` that was killed outright names a pid that is gone (or, recycled,
    one that is not ``up``): it counts as no ``up`` at all.
    """
    try:
        body = json.loads((data_dir / DISCOVERY_FILE).read_text())
        pid, settings = int(body["pid"]), body["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(settings, dict) or not _is_up(pid):
        return None
    return {str(key): str(value) for key, value in settings.items()}


def _is_up(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc here: a live pid is all we can tell
    return b"up" in argv
