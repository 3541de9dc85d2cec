"""A deleted instance stays deleted: a write after its first never re-creates it.

The step deletes its own instance while it runs, as an operator (the admin's delete, "delete
selected", ``storage.delete``) or ``hephaestus_prune`` would from another process; the runner
then finds the row gone when it writes the step's result, and nothing after the step runs. On
both storages and both runners; the same race between real processes is in
``tests/processes/test_deletion_races.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Done,
    Event,
    InstanceDeletedError,
    InstanceNotFound,
    Status,
    Step,
    WaitForEvent,
    Workflow,
)
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Context, Instance
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.config import backends
from hephaestus_django.runtime.contract import Storage
from tests import flows

pytestmark = pytest.mark.django_db(transaction=True)


class Deletes(Step):
    """Deletes its own instance, as someone else would while the step runs."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        with flows._lock:
            flows.EXECUTIONS[f"{instance.id}:deletes"] += 1
        backends.storage("default").delete(instance.id)
        return Event("ok", updates={"deleted": True})


class Ships(flows.Scripted):
    """Must never run once its instance was deleted."""


class Approval(WaitForEvent):
    events = ("approved",)


class DeletedMidStep(Workflow):
    start = Deletes
    transitions = {Deletes: {"ok": Ships}, Ships: {"ok": Done}}


class DeletedWhileResumed(Workflow):
    start = Approval
    transitions = {Approval: {"approved": Deletes}, Deletes: {"ok": Ships}, Ships: {"ok": Done}}


@pytest.fixture(params=["memory", "postgresql"])
def storage(request: pytest.FixtureRequest) -> Storage:
    if request.param == "memory":
        return InMemoryStorage()
    from hephaestus_django.storage import DjangoStorage

    return DjangoStorage(using="default")


@pytest.fixture
def local(storage: Storage) -> Iterator[LocalRunner]:
    runner = LocalRunner(lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield runner
    runner.close()
    configure()


@pytest.fixture
def queued(storage: Storage) -> Iterator[InMemoryDispatcher]:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield dispatcher
    runner.close()
    configure()


def gone(storage: Storage, instance_id: object) -> bool:
    try:
        storage.get(instance_id)  # type: ignore[arg-type]
    except InstanceNotFound:
        return storage.query() == []
    return False


def test_local_a_start_whose_instance_is_deleted_mid_step_reports_it_and_stops(
    local: LocalRunner, storage: Storage
) -> None:
    with pytest.raises(InstanceDeletedError) as caught:
        DeletedMidStep.start({})
    instance_id = caught.value.instance_id
    assert flows.executions(instance_id) == {"deletes": 1}  # Ships never ran
    assert gone(storage, instance_id)


def test_local_a_resume_whose_instance_is_deleted_mid_step_reports_it_and_stops(
    local: LocalRunner, storage: Storage
) -> None:
    instance_id = DeletedWhileResumed.start({})
    with pytest.raises(InstanceDeletedError, match=str(instance_id)):
        DeletedWhileResumed.resume(instance_id, "approved")
    assert flows.executions(instance_id) == {"deletes": 1}
    assert gone(storage, instance_id)


def test_local_a_worker_taking_over_a_deleted_instance_goes_on_with_the_others(
    local: LocalRunner, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A takeover whose step deletes the instance: logged, nothing re-created, and the pass
    goes on with the other instances it claimed."""
    caplog.set_level(logging.INFO, logger="hephaestus_django")
    doomed = engine.start(engine.new_instance(DeletedMidStep, {}))  # running, its runner gone
    other = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    storage.put(doomed)
    storage.put(other)
    handled = local.work(storage=storage)
    assert [instance.id for instance in handled] == [other.id]
    assert storage.get(other.id).status is Status.COMPLETED
    assert flows.executions(doomed.id) == {"deletes": 1}
    with pytest.raises(InstanceNotFound):
        storage.get(doomed.id)
    assert any("was deleted" in record.getMessage() for record in caplog.records)


def test_queued_a_job_whose_instance_is_deleted_mid_step_drops_its_result(
    queued: InMemoryDispatcher, storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hephaestus_django")
    instance_id = DeletedMidStep.start({})
    assert queued.drain() >= 1
    assert flows.executions(instance_id) == {"deletes": 1}
    assert queued.jobs == []  # nothing enqueued for Ships
    assert gone(storage, instance_id)
    assert any("no longer exists" in record.getMessage() for record in caplog.records)


def test_queued_a_resume_whose_step_deletes_the_instance_runs_nothing_after(
    queued: InMemoryDispatcher, storage: Storage
) -> None:
    instance_id = DeletedWhileResumed.start({})
    queued.drain()  # the job that finds Approval waiting
    DeletedWhileResumed.resume(instance_id, "approved")
    queued.drain()
    assert flows.executions(instance_id) == {"deletes": 1}
    assert queued.jobs == []
    assert gone(storage, instance_id)
