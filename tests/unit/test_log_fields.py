"""Log records about an instance carry ``instance_id``, ``workflow`` and ``step`` as ``extra``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    StepJob,
    configure,
)
from hephaestus_django.runtime.logs import about
from tests import flows
from tests.timers import Clock, make_due


def fields(record: logging.LogRecord) -> tuple[object, object, object]:
    return (
        getattr(record, "instance_id", "missing"),
        getattr(record, "workflow", "missing"),
        getattr(record, "step", "missing"),
    )


@pytest.fixture
def storage() -> Iterator[InMemoryStorage]:
    storage = InMemoryStorage(clock=Clock())
    runner = LocalRunner(lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield storage
    runner.close()
    configure()


def test_about_names_the_instance_the_workflow_and_the_step() -> None:
    assert about() == {"instance_id": None, "workflow": None, "step": None}
    assert about(instance_id="x", step="a.B") == {
        "instance_id": "x",
        "workflow": None,
        "step": "a.B",
    }


def test_a_failed_step_and_its_retry_are_logged_with_the_fields(
    storage: InMemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hephaestus_django"):
        instance_id = flows.Retried.start({"fails": 1})
    expected = (str(instance_id), flows.Retried.path(), flows.Flaky.path())
    failed = [r for r in caplog.records if "failed: Transient" in r.getMessage()]
    retry = [r for r in caplog.records if "attempt 2" in r.getMessage()]
    assert failed
    assert retry
    assert fields(failed[0]) == expected
    assert fields(retry[0]) == expected


def test_a_takeover_is_logged_with_the_fields(
    storage: InMemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    instance_id = flows.Timed.start({"script": {}})
    make_due(storage, instance_id)
    with caplog.at_level(logging.INFO, logger="hephaestus_django"):
        LocalRunner().work(storage=storage)
    [record] = [
        r for r in caplog.records if "instance" in r.getMessage() and "timer" in r.getMessage()
    ]
    # a timer coming due is logged as fired, not as a take-over (which reads like a crash)
    assert record.getMessage().startswith("fired the due timers of ")
    assert f"(timer) in instance {instance_id}" in record.getMessage()
    assert not [r for r in caplog.records if "took over" in r.getMessage()]
    assert fields(record) == (str(instance_id), flows.Timed.path(), None)


def test_a_dropped_job_is_logged_with_the_fields(caplog: pytest.LogCaptureFixture) -> None:
    storage = InMemoryStorage()
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher)
    configure(storages={"default": storage}, runner=runner)
    try:
        instance_id = flows.IfElse.start({"script": {}})
        [job] = dispatcher.take()
        dispatcher.run(job)
        with caplog.at_level(logging.INFO, logger="hephaestus_django"):
            dispatcher.run(job)  # delivered twice: the second does nothing, and says so
            storage.delete(instance_id)
            dispatcher.run(StepJob("default", instance_id, flows.Approve.path()))
    finally:
        runner.close()
        configure()
    twice, deleted = [r for r in caplog.records if r.name == "hephaestus_django.queue"]
    assert "not runnable" in twice.getMessage()
    assert fields(twice) == (str(instance_id), flows.IfElse.path(), flows.Check.path())
    assert "no longer exists" in deleted.getMessage()
    assert fields(deleted) == (str(instance_id), None, flows.Approve.path())
