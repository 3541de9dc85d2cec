"""Pausing one instance, through the public API: both storages, both runners.

(Real procrastinate workers: ``tests/dispatchers/test_pause_workers.py``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from hephaestus_django import (
    InstanceNotPausableError,
    Status,
    Workflow,
)
from hephaestus_django.core.pause import PAUSED_KEY
from hephaestus_django.runtime import backends
from hephaestus_django.runtime.contract import Storage
from tests.pauses import TRAIL, Begin, Finish, Gate, Gated, Napping, Prepare, SelfPausing, Wake
from tests.support.runners import RUNNERS, STORAGES, Settle, runner_over, storage_named
from tests.timers import make_due

pytestmark = pytest.mark.django_db(transaction=True)  # queued jobs are enqueued on commit


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> Storage:
    return storage_named(request.param)


@pytest.fixture(params=RUNNERS)
def settle(request: pytest.FixtureRequest, storage: Storage) -> Iterator[Settle]:
    TRAIL.clear()
    with runner_over(storage, request.param) as settle:
        yield settle
    TRAIL.clear()


def work(storage: Storage) -> None:
    """One pass of the worker (due timers, lapsed leases)."""
    backends.runner().work(storage=storage)


def test_a_paused_waiting_instance_records_an_event_and_runs_on_once_unpaused(
    settle: Settle, storage: Storage
) -> None:
    instance_id = Gated.start({})
    settle()
    paused = Gated.pause(instance_id, reason="deploying a fix")
    assert paused.status is Status.WAITING
    assert paused.runtime_metadata[PAUSED_KEY]["reason"] == "deploying a fix"

    resumed = Gated.resume(instance_id, "go", {"by": "ops"})  # accepted and held
    settle()
    work(storage)
    settle()
    held = Gated.get(instance_id)
    assert held.status is Status.RUNNING
    assert Gate in held.completed_steps
    assert Finish in held.active_steps
    assert held.context.result(Gate) == {"by": "ops"}
    assert TRAIL[held.id] == ["prepare"]
    assert resumed.runtime_metadata[PAUSED_KEY]["reason"] == "deploying a fix"

    Gated.unpause(instance_id)
    settle()
    done = Gated.get(instance_id)
    assert done.status is Status.COMPLETED
    assert TRAIL[done.id] == ["prepare", "finish"]
    assert PAUSED_KEY not in done.runtime_metadata


def test_the_queued_jobs_of_a_paused_instance_do_nothing_and_unpause_runs_them(
    settle: Settle, storage: Storage
) -> None:
    instance_id = Gated.start({})  # queued: Prepare's job waits in the queue
    Gated.pause(instance_id)
    settle()
    work(storage)  # the sweep leaves a paused instance alone
    settle()
    held = Gated.get(instance_id)
    if TRAIL[held.id]:  # LocalRunner ran Prepare in start(), before the pause
        assert TRAIL[held.id] == ["prepare"]
        assert held.status is Status.WAITING
    else:
        assert held.status is Status.RUNNING
        assert held.active_steps == {Prepare}
        assert held.lease_owner == "paused:"

    Gated.unpause(instance_id)
    settle()
    assert TRAIL[held.id] == ["prepare"]
    assert Gated.get(instance_id).status is Status.WAITING


def test_a_paused_instance_s_due_timer_fires_only_after_the_unpause(
    settle: Settle, storage: Storage
) -> None:
    instance_id = Napping.start({})
    settle()
    Napping.pause(instance_id)
    make_due(storage, Napping.get(instance_id).id)
    work(storage)
    settle()
    held = Napping.get(instance_id)
    assert held.status is Status.WAITING
    assert TRAIL[held.id] == ["begin"]

    Napping.unpause(instance_id)
    settle()
    work(storage)  # the timer is due: the next pass fires it
    settle()
    done = Napping.get(instance_id)
    assert done.status is Status.COMPLETED
    assert TRAIL[done.id] == ["begin", "wake"]
    assert Begin in done.completed_steps
    assert Wake in done.completed_steps


def test_a_step_running_when_its_instance_is_paused_records_its_result_and_nothing_follows(
    settle: Settle,
) -> None:
    instance_id = SelfPausing.start({})
    settle()
    held = SelfPausing.get(instance_id)
    assert held.context.steps == {"pause_me": {"paused_myself": True}}
    assert held.status is Status.RUNNING
    assert TRAIL[held.id] == ["pause_me"]

    SelfPausing.unpause(instance_id)
    settle()
    assert SelfPausing.get(instance_id).status is Status.COMPLETED
    assert TRAIL[held.id] == ["pause_me", "then"]


def test_pausing_an_ended_instance_is_refused_and_writes_nothing(settle: Settle) -> None:
    instance_id = Gated.start({})
    settle()
    Gated.resume(instance_id, "go")
    settle()
    before = Gated.get(instance_id)
    assert before.status is Status.COMPLETED
    with pytest.raises(InstanceNotPausableError, match=str(before.id)):
        Gated.pause(instance_id)
    assert Gated.get(instance_id).revision == before.revision


def test_pause_and_unpause_are_idempotent_and_take_a_business_key(settle: Settle) -> None:
    Gated.start({}, key="order-7")
    settle()
    first = Gated.pause(key="order-7", reason="first")
    again = Gated.pause(key="order-7", reason="second")
    assert again.revision == first.revision
    assert again.runtime_metadata[PAUSED_KEY]["reason"] == "first"
    unpaused = Gated.unpause(key="order-7")
    assert Gated.unpause(key="order-7").revision == unpaused.revision
    assert PAUSED_KEY not in unpaused.runtime_metadata


def test_cancel_lifts_a_pause(settle: Settle) -> None:
    instance_id = Gated.start({})
    settle()
    Gated.pause(instance_id)
    cancelled = Gated.cancel(instance_id, "not needed")
    assert cancelled.status is Status.CANCELLED
    assert PAUSED_KEY not in cancelled.runtime_metadata
    assert cancelled.lease_owner is None


def test_the_async_twins_pause_and_unpause(settle: Settle) -> None:
    instance_id = Gated.start({})
    settle()
    paused = asyncio.run(Gated.apause(instance_id, reason="async"))
    assert paused.runtime_metadata[PAUSED_KEY]["reason"] == "async"
    unpaused = asyncio.run(Gated.aunpause(instance_id))
    assert PAUSED_KEY not in unpaused.runtime_metadata


def test_pause_on_the_base_class_acts_on_any_workflow_s_instance(settle: Settle) -> None:
    instance_id = Gated.start({})
    settle()
    assert PAUSED_KEY in Workflow.pause(instance_id).runtime_metadata
    Workflow.unpause(instance_id)
    Gated.resume(instance_id, "go")
    settle()
    assert Gated.get(instance_id).status is Status.COMPLETED
