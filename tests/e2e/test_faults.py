"""Fault injection: ``taskledger up`` under a mixed load while its children are SIGKILLed.

Several users create, edit, move, delete tasks and ask for reset mails. One at a time, the
projector, the mailer, the API, Redis and the document store are killed; ``up`` must heal each
within 30 s. Afterwards, from the API alone: every acknowledged write reads back, no deleted
task is visible, each accepted reset request gave exactly one mail (up to the requests whose
answer was lost), and nothing ever answered 500.

A write whose answer is lost (the API killed under it) or 503 may or may not have happened:
it is *uncertain*, and the checks allow either outcome for it, never for an acknowledged one.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from ops.engines import free_port
from tests.e2e.test_up import Up, register_and_login

pytestmark = pytest.mark.e2e

USERS = 3
# A user's pause between two requests: a load, not a benchmark that starves the restarts.
THINK = 0.1
# Each kill, in this order; the name is how ``up`` names the child, the marker finds it.
KILLS = [
    ("projector", "serve projector"),
    ("mailer", "serve mailer"),
    ("api", "serve api"),
    ("redis", "redis-server"),
    ("secantusdb", "secantusd"),
]
HEAL_WITHIN = 30.0
LOAD_BETWEEN_KILLS = 4.0
# How long PostgreSQL stays down in the production-mode test.
OUTAGE = 5.0
RESET_SUBJECT = "Reset your taskledger password"
PASSWORD = "correct horse battery"


@dataclass
class Task:
    version: int
    title: str
    status: str = "todo"
    deleted: bool = False
    # A write to it whose outcome is unknown: later reads may show it or not.
    uncertain: bool = False


@dataclass
class Driver:
    """One user's share of the load, and what the API acknowledged to them."""

    url: str
    email: str
    phase: list[str]
    seed: int
    tasks: dict[str, Task] = field(default_factory=dict)
    resets_accepted: int = 0
    resets_uncertain: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    # (phase, what) of every answer a 5xx other than 503, or a dropped connection.
    failures: list[tuple[str, str]] = field(default_factory=list)

    def run(self, tokens: dict[str, str], stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
            while not stop.is_set():
                live = [i for i, t in self.tasks.items() if not t.deleted and not t.uncertain]
                kind = rng.choices(
                    ["create", "edit", "status", "delete", "forgot", "list"],
                    weights=[4, 3, 3, 1, 1, 2] if live else [1, 0, 0, 0, 0, 0],
                )[0]
                task_id = rng.choice(live) if live else None
                self.step(client, kind, task_id, rng)
                time.sleep(THINK)

    def step(
        self, client: httpx.Client, kind: str, task_id: str | None, rng: random.Random
    ) -> None:
        phase = self.phase[0]
        title = f"t-{uuid.uuid4().hex[:8]}"
        status = rng.choice(["todo", "in_progress", "done"])
        try:
            if kind == "create":
                answer = client.post("/v1/tasks", json={"title": title})
            elif kind == "edit":
                answer = client.patch(f"/v1/tasks/{task_id}", json={"title": title})
            elif kind == "status":
                answer = client.patch(f"/v1/tasks/{task_id}", json={"status": status})
            elif kind == "delete":
                answer = client.delete(f"/v1/tasks/{task_id}")
            elif kind == "forgot":
                answer = client.post("/v1/auth/forgot-password", json={"email": self.email})
            else:
                answer = client.get("/v1/tasks", params={"limit": 5})
        except httpx.TransportError as lost:
            # Named by the phase it ended in: the API may die under a request sent before.
            self.failures.append((self.phase[0], f"{kind}: {lost!r}"))
            self._uncertain(kind, task_id)
            time.sleep(0.2)
            return
        self.statuses[f"{kind} {answer.status_code}"] += 1
        if answer.status_code == 503:
            assert answer.headers["content-type"] == "application/problem+json"
            assert "retry-after" in answer.headers
            self._uncertain(kind, task_id)
            time.sleep(0.2)
            return
        if answer.status_code >= 500:
            self.failures.append((phase, f"{kind} {answer.status_code}: {answer.text[:300]}"))
            self._uncertain(kind, task_id)
            return
        if answer.status_code >= 400:
            self.failures.append((phase, f"{kind} {answer.status_code}: {answer.text[:300]}"))
            return
        if kind == "create":
            body = answer.json()
            self.tasks[body["id"]] = Task(version=body["version"], title=title)
        elif kind in ("edit", "status"):
            assert task_id is not None
            task = self.tasks[task_id]
            task.version = answer.json()["version"]
            if kind == "edit":
                task.title = title
            else:
                task.status = status
        elif kind == "delete":
            assert task_id is not None
            self.tasks[task_id].deleted = True
        elif kind == "forgot":
            self.resets_accepted += 1

    def _uncertain(self, kind: str, task_id: str | None) -> None:
        if kind == "forgot":
            self.resets_uncertain += 1
        elif task_id is not None and kind != "list":
            self.tasks[task_id].uncertain = True


def child_named(up: Up, marker: str) -> int:
    matching = [p.pid for p in up.tree() if marker in " ".join(p.cmdline())]
    assert len(matching) == 1, (marker, matching)
    return matching[0]


def ready_again(url: str, name: str, since: float) -> float:
    """Seconds from ``since`` until /health/ready answers 200 (the API itself may be down)."""
    last = "nothing"
    while time.monotonic() - since < HEAL_WITHIN:
        try:
            answer = httpx.get(url + "/health/ready", timeout=5)
            if answer.status_code == 200:
                return time.monotonic() - since
            last = f"{answer.status_code} {answer.text}"
        except httpx.TransportError as lost:
            last = repr(lost)
        time.sleep(0.2)
    pytest.fail(f"/health/ready not 200 within {HEAL_WITHIN:.0f}s of killing {name}: {last}")


def reset_mails_to(mail_dir: Path) -> Counter[str]:
    sent: Counter[str] = Counter()
    for path in mail_dir.glob("*.eml"):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        if mail["Subject"] == RESET_SUBJECT:
            sent[str(mail["To"])] += 1
    return sent


# Every user asks for resets from 127.0.0.1: the per-client limit must not be the test.
GENEROUS_LIMITS = {
    "TASKLEDGER_FORGOT_PASSWORD_MAX": "1000",
    "TASKLEDGER_FORGOT_PASSWORD_MAX_PER_CLIENT": "10000",
}


class Load:
    """USERS drivers on their own threads, each registered before the load begins."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = ["before"]
        self.stop = threading.Event()
        self.drivers: list[Driver] = []
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for n in range(USERS):
                email = f"user{n}-{uuid.uuid4().hex[:6]}@example.com"
                tokens = register_and_login(client, email, PASSWORD)
                driver = Driver(self.url, email, self.phase, seed=n)
                self.drivers.append(driver)
                thread = threading.Thread(target=driver.run, args=(tokens, self.stop), daemon=True)
                self.threads.append(thread)
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def statuses(self) -> Counter[str]:
        return sum((d.statuses for d in self.drivers), Counter())

    def failures(self) -> list[tuple[str, str]]:
        return [f for d in self.drivers for f in d.failures]


def verify(url: str, mail_dir: Path, load: Load) -> None:
    """From the API alone (and the sink's files): nothing acknowledged lost, no mail twice."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for driver in load.drivers:
            tokens = register_and_login_again(client, driver.email)
            check_reads_back(client, driver, tokens)

    mails = wait_for_reset_mails(mail_dir, load.drivers)
    for driver in load.drivers:
        sent = mails[driver.email]
        assert driver.resets_accepted <= sent <= driver.resets_accepted + driver.resets_uncertain
    statuses = load.statuses()
    acknowledged = sum(n for key, n in statuses.items() if key.split()[1].startswith("2"))
    assert acknowledged > 100, statuses


def dropped_connections_only(failures: list[tuple[str, str]], phases: set[str]) -> bool:
    """Each failure a lost connection (``kind: Error(...)``, no status) during ``phases``."""
    return all(
        phase in phases and ": " in what and " " not in what.split(":")[0]
        for phase, what in failures
    )


def test_up_heals_every_single_kill_under_load_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    with Up(data_dir) as up:
        up.env |= GENEROUS_LIMITS
        url = up.start()
        healed: dict[str, float] = {}
        with Load(url) as load:
            time.sleep(LOAD_BETWEEN_KILLS)
            for name, marker in KILLS:
                pid = child_named(up, marker)
                load.phase[0] = name
                killed_at = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                healed[name] = ready_again(url, name, killed_at)
                time.sleep(LOAD_BETWEEN_KILLS)
                load.phase[0] = f"after {name}"

        stderr = up.stderr()
        for name, _ in KILLS:
            assert f"{name} was killed by SIGKILL unexpectedly; restarting it" in stderr
            assert f"{name} restarted (pid" in stderr
        assert "crashed" not in stderr
        verify(url, data_dir / "mail", load)
        # Only the API's own death may drop a connection; nothing else fails (no 500, no 4xx).
        assert dropped_connections_only(load.failures(), {"api"}), load.failures()
        print(f"healed within {healed}; answers {dict(load.statuses())}")


class ScratchPostgres:
    """A PostgreSQL cluster of the test's own, on a free port: this one may be killed."""

    def __init__(self, directory: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        assert bins, "PostgreSQL's server binaries are not installed under /usr/lib/postgresql"
        self.bin = bins[-1]
        self.directory = directory
        self.data = directory / "cluster"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        directory.mkdir(parents=True, exist_ok=True)
        # initdb refuses to run as root: then the cluster belongs to the postgres user.
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.user:
            shutil.chown(directory, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.user, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{tool} failed: {done.stdout}{done.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def crash(self) -> None:
        """Immediate shutdown: no checkpoint, recovery from the WAL on the next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture
def scratch_postgres() -> Iterator[ScratchPostgres]:
    # Not under pytest's tmp_path: the postgres user could not reach into root's 0700 dir.
    directory = Path(tempfile.mkdtemp(prefix="taskledger-pg-"))
    try:
        cluster = ScratchPostgres(directory)
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(AssertionError):
                cluster.crash()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_production_mode_rides_out_a_postgresql_crash_and_restart(
    tmp_path: Path, scratch_postgres: ScratchPostgres
) -> None:
    data_dir = tmp_path / "data"
    with Up(data_dir) as up:
        up.env |= GENEROUS_LIMITS | {"TASKLEDGER_EVENT_STORE_URL": scratch_postgres.url}
        url = up.start()
        with Load(url) as load:
            time.sleep(LOAD_BETWEEN_KILLS)
            load.phase[0] = "postgres down"
            scratch_postgres.crash()
            crashed_at = time.monotonic()
            down = httpx.get(url + "/health/ready", timeout=10)
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - crashed_at)))
            load.phase[0] = "postgres restarting"
            restarted_at = time.monotonic()
            scratch_postgres.start()
            healed = ready_again(url, "postgresql", restarted_at)
            time.sleep(LOAD_BETWEEN_KILLS)

        # Readiness names the store that is down. (Commands wait for it instead: eventsourcing
        # retries a write and its pool waits for a connection; see the README.)
        assert down.status_code == 503, down.text
        assert down.json()["dependency"] == "event_store"
        verify(url, data_dir / "mail", load)
        # No child of up needed a restart, and no request got anything but 503 or success.
        assert "unexpectedly" not in up.stderr()
        assert not load.failures(), load.failures()
        print(f"ready {healed:.1f}s after PostgreSQL restarted; answers {dict(load.statuses())}")


def register_and_login_again(client: httpx.Client, email: str) -> dict[str, str]:
    answer = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    tokens: dict[str, str] = answer.json()
    return tokens


def check_reads_back(client: httpx.Client, driver: Driver, tokens: dict[str, str]) -> None:
    """Every acknowledged write reads back, once the projections have caught up."""
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    deadline = time.monotonic() + HEAL_WITHIN
    while True:
        wrong = _misreads(client, driver, headers)
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not wrong, wrong


def _misreads(client: httpx.Client, driver: Driver, headers: dict[str, str]) -> list[str]:
    wrong = []
    for task_id, task in driver.tasks.items():
        answer = client.get(f"/v1/tasks/{task_id}", headers=headers)
        if task.deleted:
            if answer.status_code != 404:
                wrong.append(f"{task_id} deleted, yet {answer.status_code}")
            continue
        if task.uncertain:
            # Either outcome of the lost write, but never less than what was acknowledged.
            if answer.status_code == 200 and answer.json()["version"] < task.version:
                wrong.append(f"{task_id} went back to {answer.json()['version']}")
            continue
        if answer.status_code != 200:
            wrong.append(f"{task_id} {answer.status_code}")
            continue
        body = answer.json()
        seen = (body["version"], body["title"], body["status"])
        if seen != (task.version, task.title, task.status):
            wrong.append(f"{task_id} reads {seen}, acknowledged {task}")
    visible: set[str] = set()
    params = {"limit": "100"}
    while True:
        listed = client.get("/v1/tasks", params=params, headers=headers)
        assert listed.status_code == 200, listed.text
        visible |= {item["id"] for item in listed.json()["items"]}
        if not listed.json()["next_cursor"]:
            break
        params["cursor"] = listed.json()["next_cursor"]
    wrong += [
        f"{i} deleted, yet listed" for i, t in driver.tasks.items() if t.deleted and i in visible
    ]
    return wrong


def wait_for_reset_mails(mail_dir: Path, drivers: list[Driver]) -> Counter[str]:
    deadline = time.monotonic() + HEAL_WITHIN
    while True:
        mails = reset_mails_to(mail_dir)
        if all(mails[d.email] >= d.resets_accepted for d in drivers):
            return mails
        if time.monotonic() > deadline:
            return mails
        time.sleep(0.5)
