"""Bulk operations on PostgreSQL (``runtime.bulk``): batches, outcomes, the cursor, resuming."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from hephaestus_django import (
    BulkOperationError,
    InMemoryDispatcher,
    LocalRunner,
    QueuedRunner,
    Status,
)
from hephaestus_django.core.errors import InvalidQueryError
from hephaestus_django.models import BulkOperation
from hephaestus_django.runtime import bulk, configure
from hephaestus_django.runtime.dispatch import BulkBatch
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.docblocks import block
from tests.flows import Unguarded

pytestmark = pytest.mark.django_db

LEASE = timedelta(minutes=1)


@pytest.fixture
def storage() -> Iterator[DjangoStorage]:
    storage = DjangoStorage()
    configure(storages={"default": storage}, runner=LocalRunner())
    yield storage
    configure()


def failed(count: int) -> list[object]:
    """``count`` failed instances of ``Unguarded``, each succeeding when retried once."""
    return [Unguarded.start({"fails": 1}) for _ in range(count)]


def test_a_bulk_retry_runs_in_batches_and_retries_each_failed_instance_once(
    storage: DjangoStorage,
) -> None:
    ids = failed(7)
    completed = Unguarded.start({"fails": 0})
    runner = LocalRunner()
    request = bulk.spec("retry", Unguarded, batch_size=3)
    assert bulk.count(storage, request) == 7  # retry selects the failed ones unless told
    made = bulk.create(storage, request)
    assert made.status == "pending"
    reports = []
    while True:
        report = bulk.run_batch(storage, runner, owner="me", lease=LEASE, bulk_id=made.id)
        assert report is not None
        reports.append(report)
        if report.state.finished:
            break
    assert [(r.done, r.refused) for r in reports] == [(3, 0), (3, 0), (1, 0), (0, 0)]
    final = storage.bulk_state(made.id)
    assert (final.done, final.refused, final.status) == (7, 0, "done")
    assert final.lease_owner is None
    for instance_id in ids:
        assert storage.get(instance_id).status is Status.COMPLETED
        assert flows.runs(instance_id, flows.PlainFlaky) == 2
    assert storage.get(completed).status is Status.COMPLETED
    assert bulk.run_batch(storage, runner, owner="me", lease=LEASE) is None


def test_refusals_are_recorded_with_their_reason(storage: DjangoStorage) -> None:
    ids = failed(2)
    done = Unguarded.start({"fails": 0})
    request = bulk.spec("retry", Unguarded, filters={"status_in": ["failed", "completed"]})
    made = bulk.create(storage, request)
    state = bulk.run_all(storage, LocalRunner(), made.id, owner="me", lease=LEASE)
    assert (state.done, state.refused) == (2, 1)
    [(refused_id, reason)] = storage.bulk_refusals(made.id)
    assert refused_id == done
    assert "failed" in reason
    assert all(storage.get(i).status is Status.COMPLETED for i in ids)


def test_a_runner_killed_mid_batch_leaves_the_rest_to_the_next_and_none_twice(
    storage: DjangoStorage,
) -> None:
    ids = failed(5)
    made = bulk.create(storage, bulk.spec("retry", Unguarded, batch_size=4))
    # the first runner claims, operates two instances of its batch, and dies before finishing
    claimed = storage.claim_bulk("dead", timedelta(seconds=-1), made.id)  # lapsed at once
    assert claimed is not None
    batch = storage.bulk_batch(claimed)
    runner = LocalRunner()
    for instance_id in batch[:2]:
        runner.retry(instance_id, storage=storage)
        storage.record_bulk_outcome(made.id, instance_id, done=True, reason=None)
    state = bulk.run_all(storage, runner, made.id, owner="next", lease=LEASE)
    assert (state.done, state.refused) == (5, 0)
    for instance_id in ids:
        assert flows.runs(instance_id, flows.PlainFlaky) == 2


def test_an_operation_held_by_a_live_runner_is_not_taken(storage: DjangoStorage) -> None:
    failed(1)
    made = bulk.create(storage, bulk.spec("retry", Unguarded))
    assert storage.claim_bulk("first", LEASE, made.id) is not None
    assert bulk.run_batch(storage, LocalRunner(), owner="second", lease=LEASE) is None
    with pytest.raises(BulkOperationError, match="being run by first"):
        bulk.run_all(storage, LocalRunner(), made.id, owner="second", lease=LEASE)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("explode", {}, "unknown bulk operation 'explode'"),
        ("rewind", {}, "needs the option"),
        ("retry", {"reason": "x"}, "unknown option"),
        ("upgrade", {"to_version": 2}, "not a versioned workflow"),
        ("cancel", {"compensate": "yes"}, "True or False"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_written(
    storage: DjangoStorage, name: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(BulkOperationError, match=message):
        bulk.spec(name, Unguarded, options=options)


def test_bad_filters_are_refused(storage: DjangoStorage) -> None:
    with pytest.raises(InvalidQueryError):
        bulk.spec("retry", Unguarded, filters={"status": "sleeping"})
    with pytest.raises(InvalidQueryError):
        bulk.spec("retry", Unguarded, filters={"colour": "red"})
    with pytest.raises(BulkOperationError):
        bulk.spec("retry", Unguarded, batch_size=0)


def test_an_operation_whose_verb_the_runner_lacks_is_refused() -> None:
    class Bare:  # a runner of an older release: no pause() verb
        pass

    verb = bulk.OPERATIONS["pause"]
    assert verb.available(LocalRunner)
    assert not verb.available(Bare)  # type: ignore[arg-type]
    with pytest.raises(BulkOperationError, match="not available"):
        bulk.spec("pause", Unguarded, runner=Bare())  # type: ignore[arg-type]


def test_a_bulk_pause_then_unpause_holds_and_releases_the_waiting_instances(
    storage: DjangoStorage,
) -> None:
    ids = [flows.TwoWaits.start({"script": {}}) for _ in range(3)]
    runner = LocalRunner()
    for name in ("pause", "unpause"):
        made = bulk.create(storage, bulk.spec(name, flows.TwoWaits, batch_size=2))
        report = None
        while report is None or not report.state.finished:
            report = bulk.run_batch(storage, runner, owner="me", lease=LEASE, bulk_id=made.id)
            assert report is not None
        final = storage.bulk_state(made.id)
        assert (final.done, final.refused) == (3, 0)
        paused = ["hephaestus.paused" in storage.get(i).runtime_metadata for i in ids]
        assert paused == [name == "pause"] * 3


def bulk_command(*args: str) -> str:
    out = StringIO()
    call_command("hephaestus_bulk", *args, stdout=out)
    return out.getvalue()


def test_the_command_counts_makes_runs_and_shows_an_operation(storage: DjangoStorage) -> None:
    ids = failed(3)
    path = Unguarded.path()
    assert bulk_command("retry", path, "--dry-run") == (
        f"Dry run: retry would take 3 instance(s) of {path} now.\n"
    )
    made = bulk_command("retry", path, "--batch-size", "2")
    bulk_id = made.split()[2].rstrip(":")
    assert "The worker runs it" in made
    assert "pending: 0 done" in bulk_command("--status", bulk_id)
    call_command("hephaestus_worker", "--once", stdout=StringIO())  # a batch per pass
    assert "running: 2 done, 0 refused" in bulk_command("--status", bulk_id)
    call_command("hephaestus_worker", "--once", stdout=StringIO())
    call_command("hephaestus_worker", "--once", stdout=StringIO())
    assert "done: 3 done, 0 refused." in bulk_command("--status", bulk_id)
    assert all(storage.get(i).status is Status.COMPLETED for i in ids)


def test_the_command_waits_and_fails_when_some_were_refused(storage: DjangoStorage) -> None:
    failed(1)
    completed = Unguarded.start({"fails": 0})
    out = StringIO()
    with pytest.raises(CommandError, match="1 instance\\(s\\) refused"):
        call_command(
            "hephaestus_bulk",
            "retry",
            Unguarded.path(),
            "--status",
            "failed",
            "--status",
            "completed",
            "--wait",
            stdout=out,
        )
    assert "done: 1 done, 1 refused." in out.getvalue()
    assert f"refused {completed}: " in out.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name an operation"),
        (("--status", "not-an-id"), "name an operation"),
        (("--status", "00000000-0000-0000-0000-000000000000"), "no bulk operation"),
        (("retry",), "name the workflow"),
        (("explode", "tests.flows.Unguarded"), "unknown bulk operation"),
        (("rewind", "tests.flows.Unguarded"), "needs the option"),
        (("retry", "tests.flows.Unguarded", "--status", "sleeping"), "unknown status"),
        (("retry", "tests.flows.Unguarded", "--storage", "nowhere"), "no storage named"),
    ],
)
def test_the_command_refuses_bad_input_and_writes_nothing(
    storage: DjangoStorage, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        bulk_command(*args)
    assert not BulkOperation.objects.exists()


def test_the_guides_shell_block(storage: DjangoStorage) -> None:
    """The fixing-instances guide's commands, on ``Unguarded`` for ``shop.workflows.Order``:
    the count, the operation made, its progress once the worker ran it."""
    ids = failed(2)
    lines = block("docs/guides/fixing-instances.md", "hephaestus_bulk retry").strip().splitlines()
    said: list[str] = []
    for line in lines:
        argv = shlex.split(line.replace("shop.workflows.Order", Unguarded.path()))
        assert argv[:2] == ["python", "manage.py"]
        if argv[2:4] == ["hephaestus_bulk", "--status"]:
            argv[4] = said[1].split()[2].rstrip(":")  # the id the second line printed
            call_command("hephaestus_worker", "--once", stdout=StringIO())
            call_command("hephaestus_worker", "--once", stdout=StringIO())
        said.append(bulk_command(*argv[3:]))
    assert said[0] == f"Dry run: retry would take 2 instance(s) of {Unguarded.path()} now.\n"
    assert said[1].startswith("Bulk operation ")
    assert "done: 2 done, 0 refused." in said[2]
    assert all(storage.get(i).status is Status.COMPLETED for i in ids)


@pytest.mark.django_db(transaction=True)  # the jobs are enqueued when the writes commit
def test_on_the_queued_runner_each_batch_is_a_job_that_enqueues_the_next(
    storage: DjangoStorage,
) -> None:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher)
    configure(storages={"default": storage}, runner=runner)
    try:
        ids = [Unguarded.start({"fails": 1}) for _ in range(5)]
        dispatcher.drain()
        assert all(storage.get(i).status is Status.FAILED for i in ids)
        request = bulk.spec("retry", Unguarded, batch_size=2, runner=runner)
        made = bulk.create(storage, request, runner=runner, alias="default")
        [job] = dispatcher.jobs
        assert isinstance(job, BulkBatch)
        assert job.instance_id == made.id
        dispatcher.drain()  # the batches' jobs, then the retried steps' jobs
        final = storage.bulk_state(made.id)
    finally:
        runner.close()
    assert (final.done, final.refused, final.status) == (5, 0, "done")
    assert all(storage.get(i).status is Status.COMPLETED for i in ids)
