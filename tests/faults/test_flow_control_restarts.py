"""Concurrency limits through a PostgreSQL restart, with real workers.

Real processes on a server of this module's own (an embedded PostgreSQL in
``.pgdata/flow-faults``; never the machine's shared server): four procrastinate workers
(supervised: one whose fetch was in flight when the server went down exits, and is started
again, as systemd or Kubernetes would) and the sweep (``hephaestus_worker``), with a 10-second
lease. This process starts instances fanning out to a step limited to 3 and a step limited to
1 per tenant (``tests.dispatchers.workflows.Throttled``), restarts the server immediately (a
crash) while they run, and starts more after.

Afterwards: the limits held throughout (the running set is sampled from the files the steps
leave while they run, and every execution's interval is checked), every instance completed,
and no slot is held or waited for. A step whose result was lost with the connection runs
again, at least once as always; its slot comes back within the lease.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections

from hephaestus_django.queues.procrastinate import ProcrastinateDispatcher
from hephaestus_django.runtime import QueuedRunner, configure
from hephaestus_django.storage import DjangoStorage
from hephaestus_django.testing.embedded import stop_server
from tests.dispatchers import workflows
from tests.faults.server import OwnServer
from tests.processes.children import REPO, Children
from tests.support.flow_control import TENANTS, most_at_once

pytestmark = pytest.mark.slow

DATA_DIR = REPO / ".pgdata" / "flow-faults"
ALIAS = "flow_faults"
QUEUE = "hephaestus"
LEASE = 10.0  # seconds: longer than the outage, so no live holder loses its slot in it
WORKER = ["procrastinate", "worker", "--queues", QUEUE, "--concurrency", "2"]
WORKER += ["--fetch-job-polling-interval", "0.2"]
SWEEP = ["hephaestus_worker", "--interval", "0.2", "--max-backoff", "1"]


class Server(OwnServer):
    def __init__(self) -> None:
        super().__init__(DATA_DIR, "flow_faults", clock=time.monotonic)


class Supervised:
    """Four workers, started again when one exits, and the sweep (not supervised)."""

    def __init__(self, tmp_path: Path, server: Server) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **Children(tmp_path, server.settings).env,
            "DJANGO_SETTINGS_MODULE": "tests.faults.queued_worker_settings",
            "LEASE": str(LEASE),
            "DISPATCHER": "hephaestus_django.queues.procrastinate.ProcrastinateDispatcher",
        }
        self.workers: dict[str, subprocess.Popen[str]] = {}
        self.sweep: subprocess.Popen[str] | None = None
        self.exits = 0
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    def django(self, *argv: str, name: str) -> subprocess.Popen[str]:
        with (self.tmp_path / f"{name}.log").open("a") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "django", *argv],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def start(self, workers: int) -> None:
        migrate = self.django("migrate", "--verbosity", "0", name="migrate")
        assert migrate.wait(timeout=120) == 0, self.logs()
        for number in range(workers):
            self.workers[f"worker-{number}"] = self.django(*WORKER, name=f"worker-{number}")
        self.sweep = self.django(*SWEEP, name="sweep")
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self._stop.wait(0.1):
            for name, process in list(self.workers.items()):
                if process.poll() is not None:
                    self.exits += 1
                    if self._stop.wait(0.5):
                        return
                    self.workers[name] = self.django(*WORKER, name=name)

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-3000:]}"
            for log in sorted(self.tmp_path.glob("*.log"))
        )

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join()
        processes = [*self.workers.values(), *([self.sweep] if self.sweep else [])]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Sampler(threading.Thread):
    """Counts the executions running now, per limit and tenant, every 20 ms: the most seen."""

    def __init__(self, running: Path) -> None:
        super().__init__(daemon=True)
        self.running = running
        self.seen: dict[str, int] = {}
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            now: dict[str, int] = defaultdict(int)
            for path in self.running.iterdir():
                # <limit>-<key>-<pid>-<ns>, the key possibly "-" (tests.dispatchers.workflows.held)
                named, pid, _ns = path.name.rsplit("-", 2)
                limit, key = named.split("-", 1)
                if not alive(int(pid)):  # its worker exited mid-step: the step runs again
                    continue
                now[limit] += 1
                now[f"{limit}:{key}"] += 1
            for name, count in now.items():
                self.seen[name] = max(self.seen.get(name, 0), count)
            self.samples += 1


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(done: Callable[[], bool], what: str, logs: Callable[[], str], timeout: float):
    began = time.monotonic()
    while not done():
        assert time.monotonic() - began < timeout, f"{what} did not happen\n{logs()}"
        time.sleep(0.2)


@pytest.fixture(scope="module", autouse=True)
def _own_server() -> Iterator[None]:
    yield
    stop_server(DATA_DIR)


@pytest.fixture
def server() -> Iterator[Server]:
    own = Server()
    yield own
    own.drop()


@pytest.fixture
def queued(server: Server, django_db_blocker: Any, settings: Any) -> Iterator[None]:
    """In this process: ``QueuedRunner`` on procrastinate, on the module's server."""
    database = {**connections.settings["default"], "CONN_MAX_AGE": 60, "TEST": {}}
    for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT"):
        database[key] = server.settings[key]
    connections.settings[ALIAS] = database
    settings.PROCRASTINATE_DATABASE_ALIAS = ALIAS
    runner = QueuedRunner(dispatcher=ProcrastinateDispatcher(queue=QUEUE), lease=LEASE)
    configure(storages={"default": DjangoStorage(using=ALIAS)}, runner=runner)
    try:
        with django_db_blocker.unblock():
            yield
            connections[ALIAS].close()
    finally:
        configure()
        runner.close()
        del connections[ALIAS]
        del connections.settings[ALIAS]


def statuses(server: Server) -> dict[str, int]:
    with psycopg.connect(server.url) as connection:
        rows = connection.execute(
            "SELECT status, count(*) FROM workflow_instances GROUP BY status"
        ).fetchall()
    return {status: int(count) for status, count in rows}


def test_limits_hold_through_a_restart_and_nothing_is_stuck(
    server: Server, queued: None, tmp_path: Path
) -> None:
    (tmp_path / "running").mkdir()
    processes = Supervised(tmp_path, server)
    processes.start(workers=4)
    sampler = Sampler(tmp_path / "running")

    def start(count: int, offset: int) -> None:
        for n in range(offset, offset + count):
            workflows.Throttled.start({"dir": str(tmp_path), "tenant": TENANTS[n % len(TENANTS)]})

    try:
        sampler.start()
        start(60, 0)
        wait_until(
            lambda: statuses(server).get("completed", 0) >= 10,
            "the first instances completing",
            processes.logs,
            timeout=120,
        )
        server.restart("immediate")  # a crash, while the limited steps run and wait in line
        connections[ALIAS].close()
        start(20, 60)
        wait_until(
            lambda: statuses(server) == {"completed": 80},
            "every instance completing",
            processes.logs,
            timeout=150,
        )
        limits = DjangoStorage(using=ALIAS).limits()
    finally:
        sampler.stop.set()
        processes.stop()
    sampler.join()

    assert sampler.samples > 0
    assert sampler.seen.get("gateway", 0) <= 3, sampler.seen
    assert sampler.seen.get("gateway", 0) >= 2, sampler.seen  # it saw work in parallel
    assert max(sampler.seen.get(f"tenant:{tenant}", 0) for tenant in TENANTS) <= 1, sampler.seen
    most = most_at_once(tmp_path / "intervals")
    assert most[("gateway", "-")] <= 3, most
    assert all(most[("tenant", tenant)] == 1 for tenant in TENANTS), most
    # Nothing stuck: no slot is held or waited for once every instance completed.
    assert all(use.holding == 0 and use.waiting == 0 for use in limits), limits
    print(
        f"\nsampled {sampler.samples} times, most seen {sampler.seen}; from the intervals {most};"
        f" worker exits (started again): {processes.exits}"
    )
