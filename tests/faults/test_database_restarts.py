"""PostgreSQL restarted, crashed and its backends terminated, under load, with a live worker.

Real processes (``tests/processes/child.py``): a load starting and resuming instances of
``Restartable`` (an event and a one-second timer, joined), and ``manage.py hephaestus_worker``.
The server is one this module owns: an embedded PostgreSQL on its own port and data directory
(``.pgdata/faults``), never the machine's shared one, with synchronous commits on, so that an
immediate shutdown (a crash) loses nothing that was acknowledged. Nobody restarts a process:
afterwards every instance must complete, every step exactly once, every acknowledged start and
resume kept. The times these tests print are measured (``pytest -s``), never asserted.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hephaestus_django.testing.embedded import stop_server
from tests.faults.server import OwnServer
from tests.processes import workflows
from tests.processes.children import REPO, Children

pytestmark = pytest.mark.slow

DATA_DIR = REPO / ".pgdata" / "faults"
LEASE = "3"  # seconds: a dead runner's steps are taken over this long after its last renewal
WORKER = ["hephaestus_worker", "--interval", "0.2", "--max-backoff", "1"]


class Server(OwnServer):
    """The embedded server of this module and one fresh database on it."""

    def __init__(self) -> None:
        super().__init__(DATA_DIR, "faults", clock=time.time)


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
def children(tmp_path: Path, server: Server) -> Iterator[Children]:
    spawned = Children(tmp_path, server.settings)
    spawned.run("manage", {"argv": ["migrate", "--verbosity", "0"]})
    yield spawned
    spawned.kill_all()


def steps_run(state: dict[str, Any]) -> Counter[str]:
    return Counter(entry["step"].rsplit(".", 1)[-1] for entry in state["execution_history"])


def wait_until(done: Callable[[], bool], what: str, timeout: float = 120) -> float:
    """Poll until ``done()``; the seconds it took. Fails, saying ``what``, past ``timeout``."""
    began = time.monotonic()
    while not done():
        assert time.monotonic() - began < timeout, f"{what} did not happen in {timeout}s"
        time.sleep(0.1)
    return time.monotonic() - began


def log_times(log: Path, pattern: str) -> list[float]:
    """The times (epoch seconds) of the worker's log lines that match ``pattern``."""
    stamps = []
    for line in log.read_text().splitlines():
        if re.search(pattern, line):
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            stamps.append(stamp.timestamp())
    return stamps


def run_load_through(fault: Callable[[], Any], server: Server, children: Children) -> None:
    """Load and a live worker; ``fault()`` twice in the middle; then everything completes."""
    tmp = children.tmp_path
    worker_log = tmp / "worker.log"
    worker = children.spawn("manage", {"argv": WORKER}, log=worker_log, LEASE=LEASE)
    stop = tmp / "stop"
    load = children.spawn("load", {"stop": str(stop)}, log=tmp / "load.log", LEASE=LEASE)

    def stored_at_least(count: int) -> Callable[[], bool]:
        return lambda: len(server.rows()) >= count

    wait_until(stored_at_least(20), "20 starts")
    fault()
    wait_until(stored_at_least(len(server.rows()) + 20), "20 more starts after the first fault")
    fault()
    wait_until(stored_at_least(len(server.rows()) + 20), "20 more starts after the second fault")
    stop.touch()
    acknowledged = children.result(load)

    def all_completed() -> bool:
        return all(status == "completed" for status, _ in server.rows().values())

    settled = wait_until(all_completed, "every instance completing")
    print(f"\nall {len(server.rows())} instances completed {settled:.1f}s after the load ended")
    assert worker.poll() is None, "the worker exited"
    worker.send_signal(signal.SIGTERM)
    assert children.result(worker)["stdout"].endswith("Worker stopped.\n")

    rows = server.rows()
    assert acknowledged["lost"] == []
    assert acknowledged["unresumed"] == []
    assert set(acknowledged["started"]) <= set(rows)  # nothing acknowledged is lost
    assert set(acknowledged["resumed"]) >= set(acknowledged["started"])
    assert set(rows) <= set(acknowledged["started"]) | set(acknowledged["unsure"])
    for instance_id, (_status, state) in rows.items():
        once = {"Split": 1, "Hold": 1, "Tick": 1, "Gather": 1, "Done": 1}
        assert steps_run(state) == once, instance_id
    print(f"load: {json.dumps({k: len(v) for k, v in acknowledged.items() if k != 'errors'})}")
    print(f"load errors: {acknowledged['errors']}; worker log:")
    print(worker_log.read_text()[-3000:])


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_under_load_loses_nothing_and_strands_nothing(
    mode: str, server: Server, children: Children
) -> None:
    back: list[float] = []
    run_load_through(lambda: back.append(server.restart(mode)), server, children)
    worker_log = children.tmp_path / "worker.log"
    failed = log_times(worker_log, "worker pass on .* failed")
    recovered = log_times(worker_log, "works again")
    assert failed, "the restarts never reached the worker: this test tested nothing"
    assert len(recovered) >= 1
    for moment in back:
        after = [stamp - moment for stamp in recovered if stamp >= moment - 1]
        print(
            f"{mode} restart: the worker worked again {min(after, default=float('nan')):.2f}s "
            "after the server was back"
        )


def test_terminated_backends_under_load_lose_nothing(server: Server, children: Children) -> None:
    terminated: list[int] = []
    run_load_through(lambda: terminated.append(server.terminate_backends()), server, children)
    assert all(terminated), "no backend was terminated: this test tested nothing"


def test_the_heartbeat_keeps_a_long_step_across_a_restart(
    server: Server, children: Children, tmp_path: Path
) -> None:
    """A step three leases long, a restart in its middle: its lease is kept, it runs once."""
    worker = children.spawn("manage", {"argv": WORKER}, log=tmp_path / "worker.log", LEASE=LEASE)
    context = {"dir": str(tmp_path), "seconds": 9}
    starter = children.spawn(
        "start",
        {"workflow": workflows.Crawling.path(), "context": context},
        log=tmp_path / "start.log",
        LEASE=LEASE,
    )
    wait_until(lambda: bool(list(tmp_path.glob("run-*"))), "the step starting")
    time.sleep(1)
    server.restart("fast")
    (instance_id,) = children.result(starter)["ids"]
    wait_until(lambda: server.rows()[instance_id][0] == "completed", "the instance completing")
    worker.send_signal(signal.SIGTERM)
    children.result(worker)
    assert len(list(tmp_path.glob("run-*"))) == 1, "the step was taken over while it ran"
    assert steps_run(server.rows()[instance_id][1]) == {"Crawl": 1, "Done": 1}
    assert "lost the connection" in (tmp_path / "start.log").read_text()  # the restart hit it
