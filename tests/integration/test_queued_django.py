"""QueuedRunner on DjangoStorage, with the in-memory dispatcher (no job engine).

What the job engines' adapters add (their own transactions, their workers) is tested in
``tests/dispatchers``; here: what the runner itself does with the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from hephaestus_django import Status
from hephaestus_django.runtime import InMemoryDispatcher, QueuedRunner, StepJob, configure, queued
from hephaestus_django.storage import DjangoStorage
from tests import flows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dispatcher() -> Iterator[InMemoryDispatcher]:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": DjangoStorage(using="default")}, runner=runner)
    yield dispatcher
    runner.close()
    configure()


def test_a_job_costs_two_statements_when_nothing_else_writes_the_instance(
    dispatcher: InMemoryDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark (which is also the read) and the result's write; no lock, no second read. (A
    step worker's sign of life, one upsert per process every 10 s at most, is no cost of a job:
    left out here, tested in ``tests/integration/test_step_workers.py``.)"""
    monkeypatch.setattr(queued, "_observers", [])
    instance_id = flows.IfElse.start({"script": {}})
    [job] = dispatcher.take()
    with CaptureQueriesContext(connection) as queries:
        dispatcher.run(job)
    statements = [query["sql"].split()[0] for query in queries.captured_queries]
    assert statements == ["UPDATE", "UPDATE"], statements  # a later write never inserts
    assert [entry.step for entry in flows.IfElse.get(instance_id).execution_history] == [
        flows.Check
    ]


def test_a_running_step_is_marked_with_where_it_runs(dispatcher: InMemoryDispatcher) -> None:
    instance_id = flows.FanOut.start({"script": {}})
    dispatcher.drain(limit=1)
    branches = dispatcher.take()
    storage = DjangoStorage(using="default")
    # What a worker's job does first: mark its step running, where; the admin reads the mark.
    pack = next(job for job in branches if job.step.endswith("Pack"))
    marked = storage.mark_running(instance_id, pack.step, "worker-7:123")
    assert marked is not None
    assert {step: mark.on for step, mark in marked.running.items()} == {flows.Pack: "worker-7:123"}
    assert flows.FanOut.get(instance_id).running == marked.running
    # While worker-7's mark is live (the queue lease its job renews), a second job of Pack is
    # refused: the step does not run beside itself.
    assert dispatcher.run(pack) is None
    assert flows.FanOut.get(instance_id).running == marked.running
    # worker-7 dies: nothing renews the lease, it lapses, the mark is dead; the job runs Pack.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE workflow_instances SET lease_expires_at = statement_timestamp()"
            " - interval '1 second' WHERE id = %s",
            [instance_id],
        )
    for job in branches:
        dispatcher.run(job)
    after = flows.FanOut.get(instance_id)
    assert after.running == {}  # every mark is dropped with its step's result
    dispatcher.drain()
    assert flows.FanOut.get(instance_id).status is Status.COMPLETED


def test_a_rolled_back_start_enqueues_nothing(dispatcher: InMemoryDispatcher) -> None:
    """The in-memory queue cannot join the transaction: it is given the jobs on commit only."""
    started = []

    def start_then_fail() -> None:
        with transaction.atomic():
            started.append(flows.IfElse.start({"script": {}}))
            assert dispatcher.jobs == []
            raise RuntimeError("the caller changes its mind")

    with pytest.raises(RuntimeError):
        start_then_fail()
    assert dispatcher.jobs == []
    assert flows.IfElse.list(id=started[0]) == []


def test_a_committed_start_enqueues_on_commit(dispatcher: InMemoryDispatcher) -> None:
    with transaction.atomic():
        instance_id = flows.IfElse.start({"script": {}})
        assert dispatcher.jobs == []
    assert dispatcher.jobs == [StepJob("default", instance_id, flows.Check.path())]


def test_the_sweep_on_postgresql_enqueues_a_lapsed_instance_again(
    dispatcher: InMemoryDispatcher,
) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    dispatcher.take()  # lost
    with connection.cursor() as cursor:  # the lease lapses (the database's clock decides)
        cursor.execute(
            "UPDATE workflow_instances SET lease_expires_at = now() - interval '1 second' "
            "WHERE id = %s",
            [instance_id],
        )
    from hephaestus_django.runtime import backends

    runner = backends.runner()
    [handled] = runner.work(storage=backends.storage("default"))
    assert handled.id == instance_id
    assert dispatcher.jobs == [StepJob("default", instance_id, flows.Check.path())]
    assert flows.executions(instance_id) == {}


def test_the_running_mark_relaxes_only_its_own_commit(dispatcher: InMemoryDispatcher) -> None:
    """The mark is committed without waiting for the disk, and the connection's
    synchronous_commit is as it was afterwards; inside a caller's transaction it is never
    relaxed (set_config would relax the caller's whole transaction)."""
    storage = DjangoStorage(using="default")

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    # The embedded test server runs with synchronous_commit off for speed: the session is set
    # on here, so that a relaxation leaking out of the mark's statement would show.
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO on")
    try:
        first = flows.IfElse.start({"script": {}})
        with CaptureQueriesContext(connection) as queries:
            assert storage.mark_running(first, flows.Check.path(), "h:1")
        assert "set_config('synchronous_commit', 'off', true)" in queries.captured_queries[0]["sql"]
        assert setting() == "on"

        second = flows.IfElse.start({"script": {}})
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            assert storage.mark_running(second, flows.Check.path(), "h:1")
            assert setting() == "on"
        assert "set_config" not in queries.captured_queries[0]["sql"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


def test_the_running_mark_is_an_update_postgresql_makes_in_place(
    dispatcher: InMemoryDispatcher,
) -> None:
    """The mark writes the ``running`` column and the revision alone, which no index covers, on
    a table that keeps room on its pages (fillfactor, migration 0012): a HOT update, no index
    entry written. ``state``, ``updated_at`` and the lease stay as they were."""
    storage = DjangoStorage(using="default")
    instance_id = flows.IfElse.start({"script": {}})
    columns = "state::text, updated_at, lease_owner, lease_expires_at"
    counters = (
        "SELECT pg_stat_get_xact_tuples_updated('workflow_instances'::regclass),"
        " pg_stat_get_xact_tuples_hot_updated('workflow_instances'::regclass)"
    )

    def read(sql: str, *params: object) -> tuple[object, ...]:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return tuple(cursor.fetchone())

    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'workflow_instances'")
        assert "fillfactor=75" in cursor.fetchone()[0]
    before = read(f"SELECT {columns} FROM workflow_instances WHERE id = %s", instance_id)
    with transaction.atomic():  # the counters are the transaction's own
        updated, hot = read(counters)
        assert storage.mark_running(instance_id, flows.Check.path(), "h:1")
        assert read(counters) == (updated + 1, hot + 1)
    after = read(f"SELECT {columns} FROM workflow_instances WHERE id = %s", instance_id)
    assert after == before
    mark = read(
        "SELECT running->%s->>'on' FROM workflow_instances WHERE id = %s",
        flows.Check.path(),
        instance_id,
    )
    assert mark == ("h:1",)
