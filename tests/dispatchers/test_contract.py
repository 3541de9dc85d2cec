"""The dispatcher contract: what every adapter does, run against each (``adapters.ADAPTERS``).

``QueuedRunner`` decides which jobs to enqueue; these tests check that what an adapter
enqueues comes back to ``receive`` intact and in time, however often it is delivered, and that
the jobs its workers run take a workflow to its end with every step's result recorded once.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction

from hephaestus_django import HephaestusError, InstanceNotFound, Status
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import QueuedRunner, configure
from hephaestus_django.runtime.contract import StepMarking
from hephaestus_django.runtime.dispatch import PendingJobs, StepJob, WakeUp
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.harness import Harness


def recorded(instance: Instance) -> Counter[str]:
    """How often each step's result is in the history."""
    return Counter(entry.step.__name__ for entry in instance.execution_history)


def markers(folder: Path) -> list[str]:
    """The steps' marker files: ``<step_key>-<attempt>-<pid>``, one per run of a step."""
    return sorted(path.name for path in folder.iterdir())


def drain_until(adapter: Harness, instance_id: uuid.UUID, status: Status) -> Instance:
    """Drain again and again until the instance is in ``status`` (timers come due meanwhile);
    fails after 30 s, which no passing run comes near."""
    deadline = time.monotonic() + 30
    while True:
        adapter.drain()
        instance = adapter.storage.get(instance_id)
        if instance.status is status:
            return instance
        assert time.monotonic() < deadline, f"still {instance.status}, not {status}"
        time.sleep(0.1)


def test_start_returns_before_the_first_step_runs_with_its_job_queued(adapter: Harness) -> None:
    instance_id = workflows.Chain.start({})

    instance = adapter.storage.get(instance_id)
    assert instance.status is Status.RUNNING
    assert len(instance.execution_history) == 0
    assert adapter.queued() == [StepJob("default", instance_id, workflows.First.path())]


def test_a_rolled_back_start_leaves_neither_instance_nor_job(adapter: Harness) -> None:
    """Where enqueueing joins the storage's transaction, the job is written in the caller's
    transaction, not after it: a rollback takes both, so no job ever names an instance that was
    never committed."""
    if not adapter.dispatcher.joins_transaction(adapter.storage):
        pytest.skip("enqueueing does not join this storage's transaction")

    class RolledBack(Exception):
        pass

    inside: list[object] = []

    def start_then_roll_back() -> None:
        with transaction.atomic():
            instance_id = workflows.Chain.start({})
            inside.extend([instance_id, adapter.queued()])
            raise RolledBack

    with pytest.raises(RolledBack):
        start_then_roll_back()
    instance_id, jobs = inside
    # inside the transaction both were there ...
    assert jobs == [StepJob("default", instance_id, workflows.First.path())]  # type: ignore[arg-type]
    # ... and after the rollback neither is
    assert adapter.queued() == []
    with pytest.raises(InstanceNotFound):
        adapter.storage.get(instance_id)


def test_a_committed_start_commits_its_job_with_it(adapter: Harness) -> None:
    if not adapter.dispatcher.joins_transaction(adapter.storage):
        pytest.skip("enqueueing does not join this storage's transaction")
    with transaction.atomic():
        instance_id = workflows.Chain.start({})
    assert adapter.queued() == [StepJob("default", instance_id, workflows.First.path())]


def test_a_chain_of_three_steps_runs_to_completion(adapter: Harness) -> None:
    instance_id = workflows.Chain.start({})
    adapter.drain()

    instance = adapter.storage.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert [(entry.step.__name__, entry.event) for entry in instance.execution_history] == [
        ("First", "ok"),
        ("Second", "ok"),
        ("Third", "ok"),
        ("Done", "done"),
    ]
    assert adapter.queued() == []


def test_a_fan_out_enqueues_each_branch_and_joins_once(adapter: Harness) -> None:
    instance_id = workflows.Diamond.start({})
    adapter.drain()

    instance = adapter.storage.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert recorded(instance) == {"Fork": 1, "Left": 1, "Right": 1, "Join": 1, "Done": 1}


def test_every_job_delivered_twice_has_one_effect(adapter: Harness, tmp_path: Path) -> None:
    """Each job is enqueued a second time as it appears: the second delivery finds its step no
    longer runnable and does nothing, so each step runs once and its result counts once."""
    instance_id = workflows.Diamond.start({"dir": str(tmp_path)})
    for _ in range(10):
        jobs = [job for job in adapter.queued() if isinstance(job, StepJob)]
        if not jobs:
            break
        adapter.dispatcher.enqueue_steps(jobs)  # the engine's second delivery of each
        adapter.drain()

    instance = adapter.storage.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert recorded(instance) == {"Fork": 1, "Left": 1, "Right": 1, "Join": 1, "Done": 1}
    here = os.getpid()
    assert markers(tmp_path) == [f"{key}-1-{here}" for key in ("fork", "join", "left", "right")]


def test_a_job_delivered_after_its_step_completed_changes_nothing(adapter: Harness) -> None:
    instance_id = workflows.Chain.start({})
    (first,) = adapter.queued()
    adapter.drain()
    before = adapter.storage.get(instance_id)

    adapter.deliver(first.payload())

    after = adapter.storage.get(instance_id)
    assert after.revision == before.revision
    assert recorded(after) == recorded(before)


def test_an_event_delivered_twice_has_one_effect(adapter: Harness) -> None:
    instance_id = workflows.Gated.start({})
    drain_until(adapter, instance_id, Status.WAITING)

    workflows.Gated.resume(instance_id, "go")
    with pytest.raises(HephaestusError):
        workflows.Gated.resume(instance_id, "go")
    instance = drain_until(adapter, instance_id, Status.COMPLETED)

    assert recorded(instance) == {"First": 1, "Gate": 1, "Second": 1, "Done": 1}


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of this project's loggers: the job engine's own (procrastinate's worker
    logs every job it runs, payload included, once something sets its level to INFO) are not
    what these tests count."""
    return [record for record in caplog.records if record.name.startswith("hephaestus_django")]


@pytest.mark.parametrize("why", ["unknown", "deleted"])
def test_a_job_for_a_missing_instance_is_logged_once_and_dropped(
    adapter: Harness, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hephaestus_django.queue")
    if why == "deleted":
        missing = workflows.Chain.start({})
        adapter.storage.delete(missing)
    else:
        missing = uuid.uuid4()
        adapter.dispatcher.enqueue_steps([StepJob("default", missing, workflows.First.path())])
    going_on = workflows.Chain.start({})  # queued after it: the worker must go on to it
    adapter.drain()

    mentions = [record for record in ours(caplog) if str(missing) in record.getMessage()]
    assert len(mentions) == 1, [record.getMessage() for record in mentions]
    assert "no longer exists" in mentions[0].getMessage()
    assert adapter.storage.get(going_on).status is Status.COMPLETED
    assert adapter.queued() == []


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("state = state - 'context'", "is corrupt at state: missing keys context"),
        ("workflow = 'gone.Workflow'", "'gone.Workflow'"),
    ],
    ids=["corrupt", "unknown-workflow"],
)
def test_a_job_naming_a_corrupt_instance_is_logged_once_and_dropped(
    adapter: Harness, caplog: pytest.LogCaptureFixture, damage: str, reason: str
) -> None:
    """Running such a job again would not help: it is logged once as an error and dropped (the
    engine records it as done), and the worker goes on with the next job."""
    if not isinstance(adapter.storage, DjangoStorage):
        pytest.skip("the damage is done in SQL, to a stored row")
    caplog.set_level(logging.INFO, logger="hephaestus_django.queue")
    corrupt = workflows.Chain.start({})
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE workflow_instances SET {damage} WHERE id = %s", [corrupt])
    going_on = workflows.Chain.start({})
    adapter.drain()

    mentions = [r for r in ours(caplog) if str(corrupt) in r.getMessage()]
    assert len(mentions) == 1, [r.getMessage() for r in mentions]
    assert mentions[0].levelno == logging.ERROR
    message = mentions[0].getMessage()
    assert message.startswith(f"dropped the step {workflows.First.path()} of instance {corrupt}")
    assert reason in message
    assert adapter.storage.get(going_on).status is Status.COMPLETED
    assert adapter.queued() == []


def test_a_malformed_payload_is_logged_and_dropped(
    adapter: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hephaestus_django.queue")
    adapter.deliver({"kind": "step", "storage": "default", "instance": "not-a-uuid"})
    instance_id = workflows.Chain.start({})
    adapter.drain()

    (dropped,) = [r for r in caplog.records if r.getMessage().startswith("dropped a job")]
    assert "'not-a-uuid'" in dropped.getMessage()
    assert adapter.storage.get(instance_id).status is Status.COMPLETED


def test_a_wake_up_job_fires_the_timer_when_it_is_due(adapter: Harness) -> None:
    instance_id = workflows.Napping.start({})
    adapter.drain()  # First runs; the timer is a wake-up job, not due yet
    waiting = adapter.storage.get(instance_id)
    assert waiting.status is Status.WAITING
    (wakeup,) = adapter.queued()
    assert isinstance(wakeup, WakeUp)
    assert wakeup.instance_id == instance_id
    assert wakeup.at > waiting.updated_at

    instance = drain_until(adapter, instance_id, Status.COMPLETED)
    assert recorded(instance) == {"First": 1, "Nap": 1, "Done": 1}
    assert adapter.queued() == []


def test_an_early_wake_up_changes_nothing_and_comes_back_when_due(adapter: Harness) -> None:
    instance_id = workflows.Dozing.start({})
    adapter.drain()
    (wakeup,) = adapter.queued()
    before = adapter.storage.get(instance_id)

    early = WakeUp("default", instance_id, wakeup.at - timedelta(hours=1))
    adapter.deliver(early.payload())

    after = adapter.storage.get(instance_id)
    assert after.status is Status.WAITING
    assert after.revision == before.revision
    assert wakeup in adapter.queued()  # the real one is still to come


def test_pending_steps_are_the_step_jobs_no_worker_has_taken(adapter: Harness) -> None:
    """Equal in instance, step and attempt: another step, a later attempt or another instance
    is not the job that waits; once run, it waits no more."""
    if not isinstance(adapter.dispatcher, PendingJobs):
        pytest.skip("the dispatcher cannot tell which jobs wait")
    instance_id = workflows.Chain.start({})
    first = StepJob("default", instance_id, workflows.First.path())
    others = [
        StepJob("default", instance_id, workflows.Second.path()),
        StepJob("default", instance_id, workflows.First.path(), 2),
        StepJob("default", uuid.uuid4(), workflows.First.path()),
    ]
    assert adapter.dispatcher.pending_steps([first, *others]) == {first}
    assert adapter.dispatcher.pending_steps([]) == frozenset()

    adapter.drain()
    assert adapter.dispatcher.pending_steps([first]) == frozenset()


def test_the_sweep_gives_a_step_whose_job_still_waits_no_second_job(
    adapter: Harness, tmp_path: Path
) -> None:
    """No worker takes the job: the instance's lease lapses again and again and the sweep
    takes it over each time, and the queue still holds one job of the step."""
    if not isinstance(adapter.dispatcher, PendingJobs):
        pytest.skip("the dispatcher cannot tell which jobs wait")
    runner = QueuedRunner(dispatcher=adapter.dispatcher, lease=0.2)
    configure(storages={"default": adapter.storage}, runner=runner)
    try:
        instance_id = workflows.Chain.start({"dir": str(tmp_path)})
        for _ in range(3):
            time.sleep(0.3)  # the lease lapses: nothing renews it while the job waits
            taken = runner.work(storage=adapter.storage)
            assert [instance.id for instance in taken] == [instance_id]
        assert adapter.queued() == [StepJob("default", instance_id, workflows.First.path())]

        instance = drain_until(adapter, instance_id, Status.COMPLETED)
    finally:
        runner.close()
    assert recorded(instance) == {"First": 1, "Second": 1, "Third": 1, "Done": 1}
    here = os.getpid()
    assert markers(tmp_path) == [f"{key}-1-{here}" for key in ("first", "second", "third")]


def test_a_job_of_a_step_that_runs_elsewhere_does_nothing(
    adapter: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second job of a step that another worker runs (its mark under the live lease that
    worker renews) is refused by ``mark_running``, and dropped: the step body does not run
    beside the first."""
    if not isinstance(adapter.storage, StepMarking):
        pytest.skip("the storage does not mark running steps")
    caplog.set_level(logging.INFO, logger="hephaestus_django.queue")
    instance_id = workflows.Chain.start({"dir": str(tmp_path)})
    step = workflows.First.path()
    assert adapter.storage.mark_running(instance_id, step, "elsewhere:7")
    before = adapter.storage.get(instance_id)

    adapter.drain()

    after = adapter.storage.get(instance_id)
    assert after.revision == before.revision
    assert markers(tmp_path) == []
    messages = [record.getMessage() for record in ours(caplog)]
    assert any("it already runs on elsewhere:7" in message for message in messages), messages
