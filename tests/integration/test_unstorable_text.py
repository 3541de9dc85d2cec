"""Text PostgreSQL cannot hold (a NUL, a lone surrogate) and numbers past its integers, given
where they would reach SQL: refused with the library's own errors before anything is read or
written, never a driver's ``DataError`` or ``UnicodeEncodeError``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest

from hephaestus_django import (
    InvalidInstanceError,
    InvalidQueryError,
    LocalRunner,
    Status,
)
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import InMemoryDispatcher, QueuedRunner, StepJob, configure
from hephaestus_django.runtime.queued import receive
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.workflows import Fulfilment

pytestmark = pytest.mark.django_db

UNSTORABLE = {
    "nul": ("order-\x00-1", re.escape("NUL character (U+0000)")),
    "surrogate": ("order-\ud800-1", re.escape("lone surrogate (U+D800)")),
}


@pytest.fixture
def local() -> Iterator[None]:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()


@pytest.mark.usefixtures("local")
@pytest.mark.parametrize("name", UNSTORABLE)
def test_a_business_key_postgresql_cannot_hold_is_refused_at_start(name: str) -> None:
    key, problem = UNSTORABLE[name]
    with pytest.raises(
        InvalidInstanceError, match=rf"business key of a Fulfilment contains a {problem}"
    ):
        Fulfilment.start({}, key=key)
    assert WorkflowInstance.objects.count() == 0


@pytest.mark.usefixtures("local")
@pytest.mark.parametrize("name", UNSTORABLE)
def test_a_lookup_by_such_a_key_is_refused_and_changes_nothing(name: str) -> None:
    key, problem = UNSTORABLE[name]
    instance_id = Fulfilment.start({}, key="order-1")
    before = DjangoStorage().get(instance_id)
    for lookup in (
        lambda: Fulfilment.get(key=key),
        lambda: Fulfilment.resume(key=key, event="paid"),
        lambda: Fulfilment.cancel(key=key),
        lambda: Fulfilment.list(key=key),
        lambda: DjangoStorage().query(key=key),
    ):
        with pytest.raises(InvalidQueryError, match=rf"the key filter .* contains a {problem}"):
            lookup()
    after = DjangoStorage().get(instance_id)
    assert (after.status, after.revision) == (before.status, before.revision)


@pytest.mark.parametrize("name", UNSTORABLE)
@pytest.mark.parametrize("filter_name", ["workflow", "workflow_family"])
def test_a_workflow_filter_postgresql_cannot_hold_is_refused(name: str, filter_name: str) -> None:
    text, problem = UNSTORABLE[name]
    with pytest.raises(
        InvalidQueryError, match=rf"the {filter_name} filter .* contains a {problem}"
    ):
        DjangoStorage().query(**{filter_name: f"shop.{text}"})


@pytest.fixture
def queued() -> Iterator[InMemoryDispatcher]:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": DjangoStorage(using="default")}, runner=runner)
    yield dispatcher
    runner.close()
    configure()


@pytest.mark.django_db(transaction=True)  # the in-memory queue is given its jobs on commit
@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("attempt", str(10**30), "'attempt' must be a whole number from 1 to 2147483647"),
        ("attempt", "2147483648", "'attempt' must be a whole number from 1 to 2147483647"),
        ("attempt", "\u0661", "'attempt' must be a whole number"),  # a digit, but not ASCII
        ("step", "tests.flows.Check\x00", "'step' 'tests.flows.Check\\\\x00' contains a NUL"),
        ("step", "tests.flows.\udc80Check", "contains a lone surrogate \\(U\\+DC80\\)"),
        ("storage", "default\x00", "'storage' 'default\\\\x00' contains a NUL"),
    ],
)
def test_a_job_payload_with_a_value_postgresql_cannot_hold_is_dropped_doing_nothing(
    queued: InMemoryDispatcher,
    caplog: pytest.LogCaptureFixture,
    field: str,
    value: str,
    said: str,
) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    [job] = queued.take()
    assert isinstance(job, StepJob)
    before = DjangoStorage().get(instance_id)
    caplog.set_level(logging.ERROR, "hephaestus_django.queue")

    assert receive({**job.payload(), field: value}) is None

    assert caplog.records, "the job was not dropped with a reason"
    assert "dropped a job" in caplog.text
    assert re.search(said, caplog.text), caplog.text
    after = DjangoStorage().get(instance_id)
    assert (after.revision, after.running, after.status) == (
        before.revision,
        before.running,
        Status.RUNNING,
    )
    queued.run(job)  # the genuine job still runs the step
    assert [entry.step for entry in flows.IfElse.get(instance_id).execution_history] == [
        flows.Check
    ]
