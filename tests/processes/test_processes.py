"""Durability with real processes against real PostgreSQL.

Children (``tests/processes/child.py``) are separate Python processes on the test database:
they resume, work and die concurrently; the assertions read what they left in the table.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django import Status
from hephaestus_django.storage import DjangoStorage
from tests.processes import workflows
from tests.processes.children import Children

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path, dict(connection.settings_dict))
    yield spawned
    spawned.kill_all()


def history(instance_id: str) -> list[tuple[str, str]]:
    instance = DjangoStorage().get(instance_id)
    return [(entry.step.__name__, entry.event) for entry in instance.execution_history]


def test_eight_processes_resume_1600_branches_without_losing_one(children: Children) -> None:
    ids = children.run("start", {"workflow": workflows.ManyGates.path(), "count": 80})["ids"]
    pairs = [[instance_id, gate.path()] for instance_id in ids for gate in workflows.GATES]
    random.Random(7).shuffle(pairs)
    go = children.go_file()
    batches = [pairs[n::8] for n in range(8)]
    started = [children.spawn("resume", {"pairs": batch, "go": str(go)}) for batch in batches]
    go.touch()
    results = [children.result(process) for process in started]

    assert sum(result["ok"] for result in results) == 1600
    assert [error for result in results for error in result["errors"]] == []
    for instance_id in ids:
        steps = history(instance_id)
        gates = Counter(step for step, event in steps if event == "go")
        assert gates == {gate.__name__: 1 for gate in workflows.GATES}, instance_id
        assert steps[-2:] == [("Gather", "ok"), ("Done", "done")]
        assert DjangoStorage().get(instance_id).status is Status.COMPLETED


def test_two_processes_resuming_one_waiting_step_exactly_one_wins(children: Children) -> None:
    (instance_id,) = children.run("start", {"workflow": workflows.ManyGates.path()})["ids"]
    pair = [[instance_id, workflows.GATES[0].path()]]
    go = children.go_file()
    racers = [children.spawn("resume", {"pairs": pair, "go": str(go)}) for _ in range(2)]
    go.touch()
    results = [children.result(process) for process in racers]

    assert sorted(result["ok"] for result in results) == [0, 1]
    (error,) = [error for result in results for error in result["errors"]]
    assert error.startswith("UnexpectedEventError: ")
    assert "is not waiting on step" in error
    assert Counter(step for step, event in history(instance_id))["Gate0"] == 1


def test_a_worker_killed_mid_step_is_taken_over(children: Children, tmp_path: Path) -> None:
    started = children.spawn(
        "start",
        {"workflow": workflows.Crunching.path(), "context": {"dir": str(tmp_path)}},
        LEASE="2",
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("attempt-1-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(tmp_path.glob("attempt-1-*")), "the step never started"
    started.send_signal(signal.SIGKILL)  # kill -9 in the middle of the step
    started.wait()
    (instance,) = DjangoStorage().query(workflow=workflows.Crunching)
    assert instance.status is Status.RUNNING

    worker = children.spawn("manage", {"argv": ["hephaestus_worker", "--interval", "0.05"]})
    deadline = time.monotonic() + 60
    while DjangoStorage().get(instance.id).status is not Status.COMPLETED:
        assert time.monotonic() < deadline, "no worker took the instance over"
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM)
    assert children.result(worker)["stdout"].endswith("Worker stopped.\n")
    assert len(list(tmp_path.glob("attempt-*"))) == 2  # at least once: run again, once
    assert history(str(instance.id)) == [("Split", "ok"), ("Crunch", "ok"), ("Done", "done")]


def test_a_worker_killed_during_a_retry_backoff_leaves_the_next_attempt_to_another(
    children: Children, tmp_path: Path
) -> None:
    first = children.spawn("manage", {"argv": ["hephaestus_worker", "--interval", "0.05"]})
    (instance_id,) = children.run(
        "start", {"workflow": workflows.Stubborn.path(), "context": {"dir": str(tmp_path)}}
    )["ids"]
    deadline = time.monotonic() + 60
    while True:  # the first worker makes attempt 2, which fails: the step waits for attempt 3
        waiting = DjangoStorage().get(instance_id).waiting_steps.get(workflows.CallFlakyService)
        if waiting is not None and waiting.attempt == 3:
            break
        assert time.monotonic() < deadline, "the second attempt never failed"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)  # kill -9 during the backoff
    first.wait()

    second = children.spawn("manage", {"argv": ["hephaestus_worker", "--interval", "0.05"]})
    deadline = time.monotonic() + 60
    while DjangoStorage().get(instance_id).status is not Status.COMPLETED:
        assert time.monotonic() < deadline, "no worker made the third attempt"
        time.sleep(0.1)
    second.send_signal(signal.SIGTERM)
    children.result(second)
    assert len(list(tmp_path.glob("attempt-*"))) == 3
    instance = DjangoStorage().get(instance_id)
    assert [
        (entry.step.__name__, entry.error.message if entry.error else entry.event)
        for entry in instance.execution_history
    ] == [
        ("Split", "ok"),
        ("CallFlakyService", "the service is down (attempt 1)"),
        ("CallFlakyService", "the service is down (attempt 2)"),
        ("CallFlakyService", "ok"),
        ("Done", "done"),
    ]


def test_a_timer_fires_once_after_every_process_stopped(children: Children) -> None:
    (instance_id,) = children.run("start", {"workflow": workflows.Napping.path()})["ids"]
    assert DjangoStorage().get(instance_id).status is Status.WAITING
    time.sleep(1.2)  # every process is gone while the timer comes due
    assert children.run("work", {})["handled"] == [instance_id]
    assert history(instance_id) == [("Split", "ok"), ("Nap", "timeout"), ("Done", "done")]
    assert children.run("work", {})["handled"] == []


def test_racing_workers_never_fire_a_timer_twice(children: Children) -> None:
    ids = children.run("start", {"workflow": workflows.Napping.path(), "count": 60})["ids"]
    time.sleep(1.2)
    go = children.go_file()
    racers = [children.spawn("work", {"go": str(go), "batch_size": 5}) for _ in range(3)]
    go.touch()
    handled = [children.result(process)["handled"] for process in racers]

    everything = [instance_id for batch in handled for instance_id in batch]
    assert sorted(everything) == sorted(ids)  # each handled by exactly one worker
    for instance_id in ids:
        assert history(instance_id) == [("Split", "ok"), ("Nap", "timeout"), ("Done", "done")]


def test_the_worker_logs_to_stderr_in_a_project_that_configured_no_logging(
    children: Children,
) -> None:
    (instance_id,) = children.run("start", {"workflow": workflows.Napping.path()})["ids"]
    time.sleep(1.2)  # the timer comes due
    worker = children.spawn("manage", {"argv": ["hephaestus_worker", "--once"]})
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    assert (
        f"INFO hephaestus_django.runner: fired the due timers of Nap (timer) in instance "
        f"{instance_id}" in err
    )
    assert (
        "INFO hephaestus_django.worker: moved 1 instance(s) on in default: now 1 completed" in err
    )


def race(children: Children, instance_id: str, operations: list[str]) -> list[dict[str, object]]:
    go = children.go_file()
    racers = [
        children.spawn("operate", {"id": instance_id, "operation": operation, "go": str(go)})
        for operation in operations
    ]
    go.touch()
    return [children.result(process) for process in racers]


@pytest.mark.parametrize("attempt", range(3))
def test_a_cancel_racing_a_resume_ends_as_its_winner_left_it(
    children: Children, attempt: int
) -> None:
    (instance_id,) = children.run("start", {"workflow": workflows.Gated.path()})["ids"]

    cancel, resume = race(children, instance_id, ["cancel", "resume"])

    # Every valid order: the cancel first (the resume then finds it cancelled); the resume
    # first and the instance completed before the cancel (refused); or the cancel landing
    # while the resumed instance runs (both done, cancelled, Done never recorded).
    instance = DjangoStorage().get(instance_id)
    if instance.status is Status.CANCELLED:
        assert cancel["ok"], (cancel, resume)
        if not resume["ok"]:
            assert str(resume["error"]).startswith("InstanceNotWaitingError: "), resume
            assert "cancelled" in str(resume["error"])
        assert ("Done", "done") not in history(instance_id)
    else:
        assert instance.status is Status.COMPLETED, (instance.status, cancel, resume)
        assert resume["ok"], (cancel, resume)
        assert not cancel["ok"], (cancel, resume)
        assert str(cancel["error"]).startswith("InstanceNotCancellableError: "), cancel
        assert "completed" in str(cancel["error"])
        assert history(instance_id) == [("Hold", "go"), ("Done", "done")]


@pytest.mark.parametrize("attempt", range(3))
def test_a_cancel_racing_a_retry_ends_as_its_winner_left_it(
    children: Children, tmp_path: Path, attempt: int
) -> None:
    context = {"dir": str(tmp_path)}
    (instance_id,) = children.run(
        "start", {"workflow": workflows.Repairable.path(), "context": context}
    )["ids"]
    assert DjangoStorage().get(instance_id).status is Status.FAILED
    (tmp_path / "fixed").touch()

    cancel, retry = race(children, instance_id, ["cancel", "retry"])

    # A failed instance cannot be cancelled, so the retry is never refused. Every valid order:
    # the cancel first (refused, the instance is failed) and the retry completes it; the retry
    # first and completed before the cancel (refused, completed); or the retry first and the
    # cancel landing while it runs (both done, cancelled, Done never recorded).
    assert retry["ok"], (cancel, retry)
    instance = DjangoStorage().get(instance_id)
    if instance.status is Status.CANCELLED:
        assert cancel["ok"], (cancel, retry)
        assert ("Done", "done") not in history(instance_id)
    else:
        assert instance.status is Status.COMPLETED, (instance.status, cancel, retry)
        assert not cancel["ok"], (cancel, retry)
        assert str(cancel["error"]).startswith("InstanceNotCancellableError: "), cancel
        assert history(instance_id)[-2:] == [("Refusing", "ok"), ("Done", "done")]


def test_eight_processes_starting_one_business_key_start_one_instance(children: Children) -> None:
    go = children.go_file()
    payload = {"workflow": workflows.Gated.path(), "key": "order-A-1001", "go": str(go)}
    racers = [children.spawn("start", payload) for _ in range(8)]
    go.touch()
    results = [children.result(process) for process in racers]

    ids = {instance_id for result in results for instance_id in result["ids"]}
    assert len(ids) == 1, ids
    stored = DjangoStorage().query(key="order-A-1001")
    assert [str(instance.id) for instance in stored] == list(ids)
    assert stored[0].status is Status.WAITING


@pytest.mark.parametrize("attempt", range(3))
def test_an_upgrade_racing_a_resume_is_serialized_by_the_row_lock(
    children: Children, attempt: int
) -> None:
    (instance_id,) = children.run(
        "start", {"workflow": workflows.VersionedGate.path(), "version": 1}
    )["ids"]
    assert DjangoStorage().get(instance_id).workflow is workflows.GatedV1

    upgrade, resume = race(children, instance_id, ["upgrade", "resume"])

    # Either order is a whole: upgraded then resumed on v2 (its Finish runs), or resumed on v1
    # (it completes there) then upgraded as a completed instance. Never v1's Hold left in a v2
    # instance, nor an event lost.
    assert (upgrade["ok"], resume["ok"]) == (True, True), (upgrade, resume)
    instance = DjangoStorage().get(instance_id)
    assert (instance.workflow, instance.workflow_version) == (workflows.GatedV2, 2)
    assert instance.status is Status.COMPLETED
    assert len(instance.upgrades) == 1
    assert history(instance_id) in (
        [("Gate", "go"), ("Finish", "finished"), ("Done", "done")],  # the upgrade came first
        [("Gate", "go"), ("Done", "done")],  # the resume came first
    )
