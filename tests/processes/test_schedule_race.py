"""Real worker processes racing over one schedule's tick: one instance, whoever wins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django import Status
from hephaestus_django.models import ScheduleRecord
from hephaestus_django.runtime.schedules import tick_id
from hephaestus_django.storage import DjangoStorage
from tests.processes import workflows
from tests.processes.children import Children

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    spawned = Children(tmp_path, dict(connection.settings_dict))
    yield spawned
    spawned.kill_all()


SCHEDULES = {
    "nightly": {
        "WORKFLOW": workflows.Scheduled.path(),
        "CRON": "0 2 * * *",
        "TIMEZONE": "Europe/Berlin",
        "MISSED": "catch_up",
    }
}


def test_three_workers_racing_over_one_tick_start_one_instance(children: Children) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        now = cursor.fetchone()[0]
    # made 25 hours ago: exactly one 02:00 tick is due (catch_up would start every missed one)
    ScheduleRecord.objects.create(name="nightly", since=now - timedelta(hours=25))
    go = children.go_file()
    env = {"SCHEDULES": json.dumps(SCHEDULES)}
    for _ in range(2):  # two rounds of three workers, each at once
        racing = [children.spawn("work", {"go": str(go)}, **env) for _ in range(3)]
        go.touch()
        for process in racing:
            children.result(process)
        go.unlink()
    [instance] = DjangoStorage().query(workflow=workflows.Scheduled)
    assert instance.status is Status.COMPLETED
    tick = ScheduleRecord.objects.get(name="nightly").last_tick
    assert tick is not None
    assert instance.id == tick_id("nightly", tick)
    assert (
        instance.business_key == f"schedule:nightly:{instance.runtime_metadata['schedule']['tick']}"
    )
