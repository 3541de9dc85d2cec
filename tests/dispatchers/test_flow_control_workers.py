"""Concurrency limits with real worker processes of a job engine (procrastinate), and
``hephaestus_worker`` as the sweep: the limits hold across processes, every instance
completes, and the slot of a worker killed with ``kill -9`` comes back within a lease.

Checked from what the steps leave behind (``tests.dispatchers.workflows.held``): the running
set is sampled throughout, and every execution's interval is checked afterwards. Waits are for
an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import PROCRASTINATE, Workers, all_completed, spawn_workers
from tests.support.flow_control import TENANTS, most_at_once, most_in_a_window, sample

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """A 3-second lease: a killed worker's slot comes back soon."""
    yield from spawn_workers(PROCRASTINATE, tmp_path, lease=3)


@pytest.fixture
def loaded_workers(tmp_path: Path) -> Iterator[Workers]:
    """A 30-second lease. A slot is held under its instance's lease, which the running step's
    heartbeat renews every third of it; a holder whose renewals stall for a whole lease loses
    its slot like any lapsed work (and the limit may then be exceeded once, by design). Eight
    worker processes on a loaded CI machine can stall a 3-second lease's beats; nothing in this
    test dies, so it gives the beats room."""
    yield from spawn_workers(PROCRASTINATE, tmp_path, lease=30)


@pytest.mark.slow
def test_four_workers_never_run_more_than_the_limits(
    loaded_workers: Workers, tmp_path: Path
) -> None:
    workers = loaded_workers
    (tmp_path / "running").mkdir()
    ids = [
        workflows.Throttled.start({"dir": str(tmp_path), "tenant": TENANTS[n % len(TENANTS)]})
        for n in range(200)
    ]
    for n in range(4):
        workers.worker(f"worker-{n}", concurrency=2)
    workers.sweep()
    seen: dict[str, int] = {}
    done = all_completed(ids)

    def finished() -> bool:
        sample(tmp_path / "running", seen)
        return done()

    workers.wait_for(finished, "every instance completing", timeout=600)
    assert seen["gateway"] <= 3, seen
    assert max(seen[f"tenant:{tenant}"] for tenant in TENANTS) <= 1, seen
    assert seen["gateway"] >= 2, seen  # the sampling saw work in parallel: it can fail
    most = most_at_once(tmp_path / "intervals")
    assert most[("gateway", "-")] <= 3, most
    assert all(most[("tenant", tenant)] == 1 for tenant in TENANTS), most
    lines = (tmp_path / "intervals").read_text().splitlines()
    assert len(lines) >= 400  # every instance ran both limited steps (at least once)
    assert workers.engine.failed() == 0
    assert DjangoStorage().limits() == [] or all(
        use.holding == 0 and use.waiting == 0 for use in DjangoStorage().limits()
    )


@pytest.mark.slow
def test_the_slot_of_a_killed_worker_comes_back_within_a_lease(
    workers: Workers, tmp_path: Path
) -> None:
    first = workers.worker("worker-1")
    stuck = workflows.Clogged.start({"dir": str(tmp_path), "name": "stuck", "stuck": True})
    workers.wait_for(lambda: any(tmp_path.glob("clog-stuck-1-*")), "the stuck run starting")
    behind = workflows.Clogged.start({"dir": str(tmp_path), "name": "behind"})
    [use] = [use for use in DjangoStorage().limits() if use.name == "proc-clog"]
    assert (use.holding, use.waiting) == (1, 1)  # it waits in line, without a job

    first.send_signal(signal.SIGKILL)  # kill -9 while its step holds the slot
    first.wait()
    workers.worker("worker-2")
    workers.sweep()

    workers.wait_for(all_completed([behind, stuck]), "the slot coming back")
    assert sorted(path.name.rsplit("-", 1)[0] for path in tmp_path.glob("clog-*")) == [
        "clog-behind-1",
        "clog-stuck-1",
        "clog-stuck-2",
    ]
    assert all(use.holding == 0 for use in DjangoStorage().limits())


def jobs_doing() -> int:
    """How many procrastinate jobs a worker is running now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'")
        return int(cursor.fetchone()[0])


def plug_use() -> tuple[int, int]:
    """The holders and waiters of the ``proc-plug`` limit."""
    found = [
        (use.holding, use.waiting) for use in DjangoStorage().limits() if use.name == "proc-plug"
    ]
    return found[0] if found else (0, 0)


@pytest.mark.slow
def test_a_cancelled_holder_frees_its_slot_at_once_and_its_late_result_takes_none(
    loaded_workers: Workers, tmp_path: Path
) -> None:
    workers = loaded_workers
    workers.worker("worker-1", concurrency=3)
    holder = workflows.Plugged.start({"dir": str(tmp_path), "name": "holder"})
    workers.wait_for(lambda: any(tmp_path.glob("plug-holder-*")), "the holder's step running")
    behind = workflows.Plugged.start({"dir": str(tmp_path), "name": "behind"})
    assert plug_use() == (1, 1)  # it waits in line, without a job

    workflows.Plugged.cancel(holder)
    # With the cancel: the slot went to the next in line, whose job was enqueued; the
    # cancelled holder's worker is still running its step.
    assert plug_use() == (1, 0)
    assert not (tmp_path / "unplugged-holder").exists()
    workers.wait_for(lambda: any(tmp_path.glob("plug-behind-*")), "the next in line running")
    third = workflows.Plugged.start({"dir": str(tmp_path), "name": "third"})
    assert plug_use() == (1, 1)

    (tmp_path / "unplug-holder").touch()  # the cancelled holder's late result comes back
    workers.wait_for(
        lambda: (tmp_path / "unplugged-holder").exists() and jobs_doing() == 1,
        "the cancelled holder's job ending",
    )
    # It took no slot back, and freed none of the others': "behind" still holds the only one.
    assert plug_use() == (1, 1)
    assert not any(tmp_path.glob("plug-third-*"))

    (tmp_path / "unplug-behind").touch()
    (tmp_path / "unplug-third").touch()
    workers.wait_for(all_completed([behind, third]), "the line moving on")
    assert workflows.Plugged.get(holder).status.value == "cancelled"
    assert sorted(path.name.rsplit("-", 2)[0] for path in tmp_path.glob("plug-*")) == [
        "plug-behind",
        "plug-holder",
        "plug-third",
    ]
    assert plug_use() == (0, 0)
    assert workers.engine.failed() == 0


@pytest.mark.slow
def test_real_workers_admit_by_priority_then_age(loaded_workers: Workers, tmp_path: Path) -> None:
    workers = loaded_workers
    for n in range(3):
        workers.worker(f"worker-{n}", concurrency=2)
    folder = str(tmp_path)
    first = workflows.Turns.start({"dir": folder, "name": "first", "hold": True})
    workers.wait_for(lambda: (tmp_path / "turns").exists(), "the first holding the slot")
    # Lined up behind it while it holds the only slot: equal priorities, then higher ones.
    lined = [(f"plain-{n}", 0) for n in range(6)]
    lined += [("high-1", 5), ("plain-6", 0), ("top", 9), ("high-2", 5), ("low", -1)]
    ids = [first]
    for name, priority in lined:
        ids.append(workflows.Turns.start({"dir": folder, "name": name}, priority=priority))
    [use] = [use for use in DjangoStorage().limits() if use.name == "proc-turn"]
    assert (use.holding, use.waiting) == (1, len(lined))
    (tmp_path / "unplug-first").touch()
    workers.sweep()
    workers.wait_for(all_completed(ids), "every instance completing")
    turns = (tmp_path / "turns").read_text().split()
    assert turns == [
        "first",
        "top",
        "high-1",
        "high-2",
        *[f"plain-{n}" for n in range(7)],
        "low",
    ]


@pytest.mark.slow
def test_rate_limits_hold_across_job_workers(loaded_workers: Workers, tmp_path: Path) -> None:
    """Starts and calls limited to 10 a second: the jobs of those over the rate are enqueued
    by the sweep as the window moves on, never more than 10 in any second."""
    workers = loaded_workers
    ids = [workflows.RateLimited.start({"dir": str(tmp_path)}) for _ in range(60)]
    for n in range(3):
        workers.worker(f"worker-{n}", concurrency=2)
    workers.sweep()
    workers.wait_for(all_completed(ids), "every instance completing", timeout=600)
    assert most_in_a_window(tmp_path / "starts", 1.0) <= 10
    assert most_in_a_window(tmp_path / "calls", 1.0) <= 10
    assert len((tmp_path / "calls").read_text().splitlines()) == 60
    assert workers.engine.failed() == 0
