"""Debounced starts on PostgreSQL: one row per workflow and key, pushed back by each start in
the window, started once by the worker with the last context (many processes at once:
tests/processes/test_debounce_processes.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from hephaestus_django import Debounce, DebounceError, Status
from hephaestus_django.models import PendingStartRecord
from hephaestus_django.storage import DjangoStorage
from hephaestus_django.worker import run_once
from tests.processes.workflows import Debounced

pytestmark = pytest.mark.django_db

WINDOW = timedelta(seconds=30)


def quiet(seconds: float = 31) -> None:
    """As if no start came for ``seconds``: the row's times move back."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE hephaestus_pending_starts SET first_at = first_at - %(s)s, "
            "due_at = due_at - %(s)s, deadline = deadline - %(s)s",
            {"s": timedelta(seconds=seconds)},
        )


def test_starts_with_one_key_become_one_row_then_one_instance_with_the_last_context() -> None:
    ids = {Debounced.start({"n": n}, key="customer-7", debounce=WINDOW) for n in range(5)}
    other = Debounced.start({"n": 9}, key="customer-8", debounce=WINDOW)
    [instance_id] = ids
    assert other != instance_id
    row = PendingStartRecord.objects.get(key="customer-7")
    assert (row.instance_id, row.pushes, row.context) == (instance_id, 5, {"n": 4})
    assert row.deadline is None
    run_once()
    assert DjangoStorage().query(workflow=Debounced) == []  # the window is not over
    quiet()
    run_once()
    run_once()
    [instance] = DjangoStorage().query(workflow=Debounced, key="customer-7")
    assert instance.id == instance_id
    assert instance.status is Status.COMPLETED
    assert instance.context.initial == {"n": 4}
    assert list(PendingStartRecord.objects.values_list("key", flat=True)) == []
    # a start after it opens a new window, with a new id
    again = Debounced.start({"n": 10}, key="customer-7", debounce=WINDOW)
    assert again != instance_id


def test_max_wait_bounds_a_stream_that_is_never_quiet() -> None:
    spec = Debounce(WINDOW, max_wait=timedelta(minutes=2))
    first = Debounced.start({"n": 0}, key="busy", debounce=spec)
    quiet(100)  # the first start was 100 seconds ago; starts kept coming since
    assert Debounced.start({"n": 1}, key="busy", debounce=spec) == first
    row = PendingStartRecord.objects.get(key="busy")
    assert row.due_at == row.deadline  # 20 seconds left, not a whole window
    quiet(20)
    assert Debounced.start({"n": 2}, key="busy", debounce=spec) == first
    run_once()
    [instance] = DjangoStorage().query(workflow=Debounced)
    assert (instance.id, instance.context.initial) == (first, {"n": 2})


def test_priority_and_metadata_come_from_the_last_start() -> None:
    Debounced.start({}, key="k", debounce=WINDOW, metadata={"from": "a"})
    instance_id = Debounced.start({}, key="k", debounce=WINDOW, metadata={"from": "b"}, priority=3)
    quiet()
    run_once()
    [instance] = DjangoStorage().query(id=instance_id)
    assert instance.runtime_metadata["from"] == "b"
    assert instance.runtime_metadata["hephaestus_priority"] == 3


def test_bad_input_writes_nothing(settings: Any) -> None:
    with pytest.raises(DebounceError, match="needs a business key"):
        Debounced.start({}, debounce=WINDOW)
    with pytest.raises(DebounceError, match="above zero"):
        Debounced.start({}, key="k", debounce=timedelta(0))
    with pytest.raises(ValueError, match="cannot store"):
        Debounced.start({"x": object()}, key="k", debounce=WINDOW)
    with pytest.raises(ValueError, match="business key"):
        Debounced.start({}, key="x" * 300, debounce=WINDOW)
    assert not PendingStartRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_with_queued_runner_the_worker_writes_it_and_its_first_job_follows_the_commit() -> None:
    from hephaestus_django.runtime import InMemoryDispatcher, QueuedRunner, configure
    from hephaestus_django.runtime.worker import Worker

    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    storage = DjangoStorage(using="default")
    configure(storages={"default": storage}, runner=runner)
    try:
        first = Debounced.start({"n": 1}, key="q", debounce=WINDOW)
        assert Debounced.start({"n": 2}, key="q", debounce=WINDOW) == first
        quiet()
        workers = [Worker({"default": storage}, runner) for _ in range(2)]
        for worker in workers:
            worker.run_once()
        dispatcher.drain()
        [instance] = storage.query(workflow=Debounced)
        assert (instance.id, instance.status) == (first, Status.COMPLETED)
        assert instance.context.initial == {"n": 2}
    finally:
        runner.close()
        configure()
