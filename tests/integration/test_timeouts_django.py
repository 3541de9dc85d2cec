"""Step timeouts on PostgreSQL: both runners, the timed thread's connections, inside the
caller's transaction, and the admin's instance page.

No test asserts on timing: a step that must overrun either blocks until the test releases it
(``flows.release``, after the runner gave up on it), or, in the caller's thread, sleeps ten
thousand times its timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from html import unescape
from io import StringIO
from typing import Any
from uuid import uuid4

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client
from django.urls import reverse

from hephaestus_django import (
    Context,
    Done,
    Event,
    InMemoryDispatcher,
    Instance,
    LocalRunner,
    QueuedRunner,
    Retry,
    Status,
    Step,
    StepTimeout,
    Workflow,
)
from hephaestus_django.runtime import WakeUp, configure
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.flows import RetriedStalling, StallsThenRecovers
from tests.timers import make_due

pytestmark = pytest.mark.django_db


@pytest.fixture
def storage() -> Iterator[DjangoStorage]:
    storage = DjangoStorage()
    configure(storages={"default": storage}, runner=LocalRunner())
    yield storage
    configure()


def errors_in_history(instance: Instance) -> list[str]:
    return [
        entry.error.error_type.rsplit(".", 1)[1]
        for entry in instance.execution_history
        if entry.error is not None
    ]


# --- on threads of their own (outside a transaction) ----------------------------------------


@pytest.mark.django_db(transaction=True)  # outside a transaction: the step gets its own thread
def test_local_runner_and_the_worker_retry_a_timeout_and_discard_the_late_result(
    storage: DjangoStorage,
) -> None:
    instance_id = uuid4()
    StallsThenRecovers.start({"hangs": 1}, id=instance_id)
    waiting = storage.get(instance_id)
    assert waiting.status is Status.WAITING
    assert waiting.waiting_steps[RetriedStalling].attempt == 2
    assert errors_in_history(waiting) == ["StepTimeout"]

    make_due(storage, instance_id)
    out = StringIO()
    call_command("hephaestus_worker", "--once", stdout=out)
    assert out.getvalue() == "Moved 1 instance(s) on.\n"
    done = storage.get(instance_id)
    assert done.status is Status.COMPLETED
    assert done.context.result(RetriedStalling) == {"attempt": 2}

    flows.release(instance_id)  # attempt 1 returns {"attempt": 1, "late": True}: discarded

    after = storage.get(instance_id)
    assert after.revision == done.revision
    assert after.context.result(RetriedStalling) == {"attempt": 2}


@pytest.mark.django_db(transaction=True)  # the jobs are enqueued when the write commits
def test_queued_runner_retries_a_timeout_and_discards_the_late_result(
    storage: DjangoStorage,
) -> None:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher)
    configure(storages={"default": storage}, runner=runner)
    instance_id = uuid4()
    try:
        StallsThenRecovers.start({"hangs": 1}, id=instance_id)
        [job] = dispatcher.take()
        dispatcher.run(job)  # attempt 1 overruns; its job records the timeout and returns
        waiting = storage.get(instance_id)
        assert waiting.waiting_steps[RetriedStalling].attempt == 2
        assert errors_in_history(waiting) == ["StepTimeout"]
        assert waiting.running == {}
        assert [type(job) for job in dispatcher.jobs] == [WakeUp]
        dispatcher.drain()  # the backoff is zero: the wake-up is due, then attempt 2's job
        done = storage.get(instance_id)
    finally:
        runner.close()
    assert done.status is Status.COMPLETED
    assert done.context.result(RetriedStalling) == {"attempt": 2}
    assert done.lease_owner is None

    flows.release(instance_id)

    assert storage.get(instance_id).revision == done.revision


USED: list[BaseDatabaseWrapper] = []
"""The connection each ``Queries`` attempt used, in its thread."""


class Queries(Step):
    """Reads from the database on its attempt's thread; hangs first if the script says so."""

    events = ("ok",)
    timeout = flows.TIMEOUT

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        USED.append(connections["default"])
        if context.initial.get("hang"):
            flows._HUNG.setdefault(str(instance.id), []).append(threading.current_thread())
            flows.gate(instance.id).wait(timeout=60)
        return Event("ok", updates={"thread": threading.current_thread().name})


class QueriesFlow(Workflow):
    start_step = Queries
    transitions = {Queries: {"ok": Done}}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("hang", [False, True], ids=["on time", "abandoned"])
def test_an_attempts_thread_closes_its_database_connection_when_it_ends(
    storage: DjangoStorage, hang: bool
) -> None:
    USED.clear()
    instance_id = uuid4()
    QueriesFlow.start({"hang": hang}, id=instance_id)
    flows.release(instance_id)
    instance = storage.get(instance_id)
    assert instance.status is (Status.FAILED if hang else Status.COMPLETED)
    [used] = USED
    assert used is not connections["default"]  # the attempt's thread had its own
    assert used.connection is None  # and closed it as it ended


# --- inside the caller's transaction --------------------------------------------------------


class SeesTheCallersRows(Step):
    """Reads a user the caller created in its uncommitted transaction."""

    events = ("ok",)
    timeout = timedelta(hours=1)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        seen = User.objects.filter(username=context.initial["username"]).exists()
        return Event("ok", updates={"seen": seen, "thread": threading.current_thread().name})


class SeesFlow(Workflow):
    start_step = SeesTheCallersRows
    transitions = {SeesTheCallersRows: {"ok": Done}}


class Overruns(Step):
    """Sleeps ten thousand times its timeout, then writes a row and returns."""

    events = ("ok",)
    timeout = timedelta(microseconds=1)
    retry = Retry(max_attempts=2, backoff=timedelta(hours=1), on=(StepTimeout,))

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        time.sleep(0.01)
        User.objects.create_user(f"overran-{instance.id}-{uuid4().hex[:8]}")
        return Event("ok", updates={"late": True})


class OverrunsFlow(Workflow):
    start_step = Overruns
    transitions = {Overruns: {"ok": Done}}


def test_inside_a_transaction_a_timed_step_runs_in_the_callers_thread_and_sees_its_rows(
    storage: DjangoStorage,
) -> None:
    with transaction.atomic():
        User.objects.create_user("uncommitted")
        done = SeesFlow.get(SeesFlow.start({"username": "uncommitted"}))
    assert done.context.result(SeesTheCallersRows) == {
        "seen": True,
        "thread": threading.current_thread().name,
    }


def test_inside_a_transaction_an_overrun_is_a_timeout_once_the_step_returns(
    storage: DjangoStorage,
) -> None:
    with transaction.atomic():
        instance_id = OverrunsFlow.start({})
        waiting = storage.get(instance_id)
        # The step's writes stay in the caller's transaction, as those of a step that raises.
        assert User.objects.filter(username__startswith=f"overran-{instance_id}").exists()
    assert waiting.status is Status.WAITING
    assert errors_in_history(waiting) == ["StepTimeout"]
    [entry] = waiting.execution_history
    assert entry.error is not None
    assert entry.error.traceback is not None
    assert "inside the caller's transaction" in entry.error.traceback
    assert "overruns" not in waiting.context.steps


# --- the admin ------------------------------------------------------------------------------


def test_the_admin_page_shows_the_timed_out_attempts(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance_id = OverrunsFlow.start({})
    make_due(storage, instance_id)
    LocalRunner().work(storage=storage)  # attempt 2 overruns too: the instance fails
    failed = storage.get(instance_id)
    assert failed.status is Status.FAILED
    assert errors_in_history(failed) == ["StepTimeout"]  # the earlier attempt; the last: error
    assert failed.error is not None
    response = admin_client.get(
        reverse("admin:hephaestus_django_workflowinstance_change", args=[instance_id])
    )
    assert response.status_code == 200
    page = unescape(response.content.decode())
    assert "StepTimeout" in page
    assert f"step Overruns of instance {instance_id} (OverrunsFlow) ran longer than its" in page
    assert "timeout of 0:00:00.000001" in page
