"""Eight real processes hammering one debounce key, then three workers racing over it: one
row all along, one instance, started once, with the last start's context."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django import Status
from hephaestus_django.models import PendingStartRecord
from hephaestus_django.storage import DjangoStorage
from tests.processes import workflows
from tests.processes.children import Children

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PROCESSES = 8
STARTS = 25


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path, dict(connection.settings_dict))
    yield spawned
    spawned.kill_all()


def test_eight_processes_on_one_key_make_one_instance_with_the_last_context(
    children: Children,
) -> None:
    go = children.go_file()
    # an hour's window: nothing is due while they push (no clock in the assertion)
    hammering = [
        children.spawn(
            "debounce",
            {"go": str(go), "key": "hot", "window": 3600, "count": STARTS, "process": p},
        )
        for p in range(PROCESSES)
    ]
    go.touch()
    ids = {i for process in hammering for i in children.result(process)["ids"]}
    go.unlink()
    [instance_id] = ids  # every start of every process got the same id
    [row] = PendingStartRecord.objects.all()
    assert row.pushes == PROCESSES * STARTS
    assert str(row.instance_id) == instance_id
    # the last start, from here, wins; then the window goes quiet and three workers race
    last = workflows.Debounced.start(
        {"process": "last"}, key="hot", debounce=timedelta(seconds=3600)
    )
    assert str(last) == instance_id
    PendingStartRecord.objects.update(due_at=row.due_at - timedelta(hours=2))
    racing = [children.spawn("work", {"go": str(go)}) for _ in range(3)]
    go.touch()
    for process in racing:
        children.result(process)
    [instance] = DjangoStorage().query(workflow=workflows.Debounced)
    assert str(instance.id) == instance_id
    assert instance.status is Status.COMPLETED
    assert instance.context.initial == {"process": "last"}
    assert instance.business_key == "hot"
    assert not PendingStartRecord.objects.exists()
