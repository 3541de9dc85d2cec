"""Pausing an instance with real worker processes, for each job engine: a paused instance's
queued job does nothing, unpausing enqueues its work again and the workers run it once; a step
running when its instance is paused records its result, and nothing after it runs until the
unpause.

Waits are for an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hephaestus_django import Status
from hephaestus_django.core.pause import PAUSED_KEY
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import Workers, all_completed, recorded

pytestmark = pytest.mark.django_db(transaction=True)

PAUSED_JOB = "the instance is paused"
"""What a worker logs for a job of a paused instance, which it drops."""


def test_a_paused_instance_s_queued_job_does_nothing_and_unpause_runs_it(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    instance_id = workflows.Chain.start({"dir": str(ran)})  # First's job waits in the queue
    workflows.Chain.pause(instance_id, reason="deploying")
    workers.worker("worker-1")
    workers.wait_for(lambda: PAUSED_JOB in workers.logs(), "the worker dropping the job")
    storage = DjangoStorage()
    held = storage.get(instance_id)
    assert held.status is Status.RUNNING
    assert held.completed_steps == frozenset()
    assert not any(ran.iterdir())

    workflows.Chain.unpause(instance_id)
    workers.wait_for(all_completed([instance_id]), "the instance completing")
    done = storage.get(instance_id)
    assert PAUSED_KEY not in done.runtime_metadata
    assert recorded(done) == {"First": 1, "Second": 1, "Third": 1, "Done": 1}
    assert sorted(path.name.split("-")[0] for path in ran.iterdir()) == [
        "first",
        "second",
        "third",
    ]
    assert workers.engine.failed() == 0


def test_a_step_running_when_paused_records_its_result_and_nothing_follows_until_unpaused(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    workers.worker("worker-1")
    instance_id = workflows.Relayed.start({"dir": str(ran)})
    workers.wait_for(lambda: any(ran.glob("relay-1-*")), "the step starting")

    workflows.Relayed.pause(instance_id)
    (ran / "release1").touch()
    storage = DjangoStorage()
    workers.wait_for(
        lambda: storage.get(instance_id).context.result(workflows.Relay) is not None,
        "the running step's result being recorded",
    )
    held = storage.get(instance_id)
    assert held.status is Status.RUNNING
    assert workflows.Ship in held.active_steps
    assert held.lease_owner == "paused:"
    assert workers.engine.step_jobs().waiting == 0  # no job was enqueued for Ship
    assert not any(ran.glob("ship-*"))

    workflows.Relayed.unpause(instance_id)
    workers.wait_for(all_completed([instance_id]), "the instance completing")
    done = storage.get(instance_id)
    assert recorded(done)["Relay"] == 1
    assert recorded(done)["Ship"] == 1
    assert len(list(ran.glob("ship-*"))) == 1
    assert workers.engine.failed() == 0


def test_a_held_workflow_s_new_start_waits_and_unpause_all_has_the_workers_run_it(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    workers.worker("worker-1")
    assert workflows.Chain.pause_all(reason="deploying") == 0
    instance_id = workflows.Chain.start({"dir": str(ran)})  # stored paused: no job
    storage = DjangoStorage()
    assert storage.get(instance_id).lease_owner == "paused:"
    assert workers.engine.step_jobs().enqueued == 0

    assert workflows.Chain.unpause_all() == 1
    workers.wait_for(all_completed([instance_id]), "the instance completing")
    assert recorded(storage.get(instance_id)) == {"First": 1, "Second": 1, "Third": 1, "Done": 1}
    assert workers.engine.failed() == 0
