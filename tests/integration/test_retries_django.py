"""Retries on PostgreSQL: both runners, the worker command, and the admin's instance page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from hephaestus_django import InMemoryDispatcher, LocalRunner, QueuedRunner, Status
from hephaestus_django.runtime import WakeUp, configure
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.flows import Flaky, Retried
from tests.timers import make_due

pytestmark = pytest.mark.django_db


@pytest.fixture
def storage() -> Iterator[DjangoStorage]:
    storage = DjangoStorage()
    configure(storages={"default": storage}, runner=LocalRunner())
    yield storage
    configure()


def failed_attempts(instance_id: object, storage: DjangoStorage) -> list[str]:
    return [
        entry.error.message
        for entry in storage.get(instance_id).execution_history
        if entry.error is not None
    ]


def test_local_runner_and_the_worker_fail_twice_then_succeed(storage: DjangoStorage) -> None:
    instance_id = Retried.start({"fails": 2})
    waiting = storage.get(instance_id)
    assert waiting.status is Status.WAITING
    assert waiting.waiting_steps[Flaky].attempt == 2
    for expected in ("Moved 1 instance(s) on.\n", "Moved 1 instance(s) on.\n"):
        make_due(storage, instance_id)
        out = StringIO()
        call_command("hephaestus_worker", "--once", stdout=out)
        assert out.getvalue() == expected
    done = storage.get(instance_id)
    assert done.status is Status.COMPLETED
    assert flows.runs(instance_id) == 3
    assert failed_attempts(instance_id, storage) == ["run 1 failed", "run 2 failed"]
    assert done.attempts == {}


@pytest.mark.django_db(transaction=True)  # the jobs are enqueued when the write commits
def test_queued_runner_fails_twice_then_succeeds(storage: DjangoStorage) -> None:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher)
    configure(storages={"default": storage}, runner=runner)
    try:
        instance_id = Retried.start({"fails": 2})
        dispatcher.drain()
        for attempt in (2, 3):
            waiting = storage.get(instance_id)
            assert waiting.waiting_steps[Flaky].attempt == attempt
            [wakeup] = dispatcher.take()
            assert isinstance(wakeup, WakeUp)
            assert wakeup.at == waiting.waiting_steps[Flaky].resume_at
            make_due(storage, instance_id)  # the database's clock cannot be moved: the timer is
            dispatcher.run(wakeup)  # and the job engine delivers the wake-up
            dispatcher.drain()
        done = storage.get(instance_id)
    finally:
        runner.close()
    assert done.status is Status.COMPLETED
    assert flows.runs(instance_id) == 3
    assert failed_attempts(instance_id, storage) == ["run 1 failed", "run 2 failed"]
    assert done.lease_owner is None


def test_attempts_running_out_keep_every_error(storage: DjangoStorage) -> None:
    instance_id = Retried.start({"fails": 9})
    for _ in range(2):
        make_due(storage, instance_id)
        LocalRunner().work(storage=storage)
    failed = storage.get(instance_id)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.message == "run 3 failed"
    assert failed_attempts(instance_id, storage) == ["run 1 failed", "run 2 failed"]
    assert Retried.retry(instance_id).attempts == {Flaky: 1}  # the count starts again


def test_the_admin_shows_the_attempt_and_the_failed_attempts(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance_id = Retried.start({"fails": 2})
    make_due(storage, instance_id, ago=-timedelta(minutes=5))  # due in five minutes
    page = admin_client.get(
        reverse("admin:hephaestus_django_workflowinstance_change", args=[instance_id])
    ).content.decode()
    assert "waits to retry: attempt 2 of 3 at" in page
    assert "last error tests.flows.Transient: run 1 failed" in page
    assert 'class="hx-failed-attempt"' in page
    assert "attempt failed" in page
    assert 'id="hx-resume"' not in page  # a retry timer cannot be resumed
    resume = admin_client.get(
        reverse("admin:hephaestus_django_workflowinstance_resume", args=[instance_id]),
        follow=True,
    ).content.decode()
    assert "it waits for no event, only for the next attempt of a failed step" in resume
