"""Schedules on PostgreSQL: the worker, the policy for missed ticks, the system checks and
``manage.py hephaestus_schedules`` (the racing workers: tests/processes/test_schedule_race.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from hephaestus_django import Status
from hephaestus_django.models import ScheduleRecord
from hephaestus_django.runtime.schedules import tick_id
from hephaestus_django.storage import DjangoStorage
from hephaestus_django.worker import prune_schedules, run_once
from tests.processes.workflows import Scheduled

pytestmark = pytest.mark.django_db


def nightly(**entry: Any) -> dict[str, Any]:
    return {
        "nightly": {
            "WORKFLOW": Scheduled.path(),
            "CRON": "0 2 * * *",
            "TIMEZONE": "Europe/Berlin",
            "CONTEXT": {"kind": "daily"},
            **entry,
        }
    }


def started() -> list[Any]:
    return DjangoStorage().query(workflow=Scheduled)


def database_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        now: datetime = cursor.fetchone()[0]
    return now


def since(days: float) -> None:
    """The schedule was made ``days`` ago (as if no worker ran since)."""
    ScheduleRecord.objects.update_or_create(
        name="nightly", defaults={"since": database_now() - timedelta(days=days)}
    )


@pytest.mark.parametrize(
    ("entry", "count"),
    [({}, 1), ({"MISSED": "catch_up"}, 3), ({"MISSED": "catch_up", "CATCH_UP_LIMIT": 2}, 2)],
)
def test_a_worker_back_after_three_ticks_keeps_the_policy(
    settings: Any, entry: dict[str, Any], count: int
) -> None:
    settings.HEPHAESTUS = {"SCHEDULES": nightly(**entry)}
    since(days=3.01)  # three 02:00 ticks fell since
    run_once()
    run_once()
    instances = started()
    assert len(instances) == count
    assert all(i.status is Status.COMPLETED for i in instances)
    ticks = sorted(
        datetime.fromisoformat(i.runtime_metadata["schedule"]["tick"]) for i in instances
    )
    assert [
        i.id for i in sorted(instances, key=lambda i: i.runtime_metadata["schedule"]["tick"])
    ] == [tick_id("nightly", tick) for tick in ticks]
    assert all(tick.astimezone(UTC).hour in (0, 1) for tick in ticks)  # 02:00 in Berlin
    record = ScheduleRecord.objects.get(name="nightly")
    assert record.last_tick == ticks[-1]
    assert record.next_due_at == ticks[-1] + timedelta(days=1)


def test_a_new_schedule_counts_ticks_from_when_a_worker_first_sees_it(settings: Any) -> None:
    settings.HEPHAESTUS = {"SCHEDULES": nightly(CRON="* * * * * */30")}  # every 30 seconds
    run_once()
    assert ScheduleRecord.objects.filter(name="nightly", paused=False).count() == 1


BAD = [
    ({"CRON": "0 25 * * *"}, "hephaestus.E031"),
    ({"TIMEZONE": "Europe/Atlantis"}, "hephaestus.E032"),
    ({"WORKFLOW": "shop.workflows.Missing"}, "hephaestus.E033"),
    ({"CONTEXT": {"lock": object()}}, "hephaestus.E034"),
    ({"KEY": "{when}"}, "hephaestus.E035"),
    ({"MISSED": "later"}, "hephaestus.E036"),
    ({"STORAGE": "tenant_z"}, "hephaestus.E037"),
    ({"CRONTAB": "0 2 * * *"}, "hephaestus.E030"),
]


@pytest.mark.parametrize(("entry", "check_id"), BAD)
def test_a_bad_schedule_is_a_check_error_and_nothing_starts(
    settings: Any, entry: dict[str, Any], check_id: str
) -> None:
    settings.HEPHAESTUS = {"SCHEDULES": nightly(**entry)}
    errors = [m for m in run_checks() if m.id.startswith("hephaestus.E03")]
    assert [e.id for e in errors] == [check_id]
    assert errors[0].hint
    assert "nightly" in errors[0].obj + errors[0].msg
    since(days=3.01)
    run_once()
    assert started() == []
    with pytest.raises(SystemCheckError):
        call_command("hephaestus_worker", "--once", skip_checks=False)


def test_schedules_that_are_not_a_dict(settings: Any) -> None:
    settings.HEPHAESTUS = {"SCHEDULES": ["nightly"]}
    [error] = [m for m in run_checks() if m.id.startswith("hephaestus.E03")]
    assert error.id == "hephaestus.E030"


def command(*args: str) -> str:
    out = StringIO()
    call_command("hephaestus_schedules", *args, stdout=out)
    return out.getvalue()


def test_the_command_pauses_resumes_triggers_and_backfills(settings: Any) -> None:
    settings.HEPHAESTUS = {"SCHEDULES": nightly()}
    assert "nightly  '0 2 * * *' Europe/Berlin" in command("list")
    assert command("pause", "nightly") == "Paused nightly.\n"
    assert "next: paused" in command("list")
    since(days=3.01)
    run_once()
    assert started() == []
    assert command("resume", "nightly") == "Resumed nightly.\n"
    run_once()
    assert started() == []  # ticks that fell while paused are not run
    out = command("trigger", "nightly")
    [instance] = started()
    assert out == f"Started {instance.id}.\n"
    out = command("backfill", "nightly", "--from", "2025-01-01", "--to", "2025-01-03T12:00+01:00")
    assert out.endswith("Backfilled 3 tick(s): 3 started.\n")
    assert command(
        "backfill", "nightly", "--from", "2025-01-01", "--to", "2025-01-03T12:00+01:00"
    ).endswith("Backfilled 3 tick(s): 0 started.\n")
    assert len(started()) == 4
    with pytest.raises(CommandError, match="no schedule named 'weekly'"):
        command("trigger", "weekly")
    with pytest.raises(CommandError, match="not a range in the past"):
        command("backfill", "nightly", "--from", "2025-01-03", "--to", "2025-01-01")
    with pytest.raises(CommandError):
        command("backfill", "nightly", "--from", "yesterday", "--to", "2025-01-01")


def test_the_admin_lists_schedules_and_operates_them_with_permission(
    settings: Any, admin_client: Any, client: Any, django_user_model: Any
) -> None:
    settings.HEPHAESTUS = {"SCHEDULES": nightly()}
    since(days=1.01)
    run_once()
    [instance] = started()
    page = admin_client.get("/admin/hephaestus_django/schedulerecord/").content.decode()
    assert "0 2 * * * (Europe/Berlin)" in page
    assert f"/admin/hephaestus_django/workflowinstance/{instance.id}/change/" in page
    assert "?schedule=nightly" in page
    changelist = "/admin/hephaestus_django/schedulerecord/"
    admin_client.post(changelist, {"action": "pause", "_selected_action": ["nightly"]})
    assert ScheduleRecord.objects.get(name="nightly").paused
    admin_client.post(changelist, {"action": "trigger", "_selected_action": ["nightly"]})
    assert len(started()) == 2
    # a user who may view but not operate sees no actions, and cannot post one
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_schedulerecord"))
    client.force_login(viewer)
    page = client.get(changelist).content.decode()
    assert "Pause the selected" not in page
    client.post(changelist, {"action": "resume", "_selected_action": ["nightly"]})
    assert ScheduleRecord.objects.get(name="nightly").paused


def test_the_records_of_removed_schedules_are_pruned_and_start_nothing(settings: Any) -> None:
    weekly = {**nightly()["nightly"], "CRON": "0 3 * * 1"}
    settings.HEPHAESTUS = {"SCHEDULES": {**nightly(), "weekly": weekly}}
    run_once()
    assert set(ScheduleRecord.objects.values_list("name", flat=True)) == {"nightly", "weekly"}
    # "weekly" leaves the settings: its row, days behind, starts nothing
    settings.HEPHAESTUS = {"SCHEDULES": nightly(CRON="0 2 1 1 *")}
    ScheduleRecord.objects.update(since=database_now() - timedelta(days=30))
    run_once()
    assert started() == []
    assert command("prune") == "Removed the records of weekly.\n"
    assert command("prune") == "No record of a removed schedule.\n"
    assert list(ScheduleRecord.objects.values_list("name", flat=True)) == ["nightly"]
    # a schedule the checks refuse keeps its record (and its pause) until it is fixed
    command("pause", "nightly")
    settings.HEPHAESTUS = {"SCHEDULES": nightly(CRON="0 25 * * *")}
    assert command("prune") == "No record of a removed schedule.\n"
    assert ScheduleRecord.objects.get(name="nightly").paused
    # a malformed setting prunes nothing
    settings.HEPHAESTUS = {"SCHEDULES": ["nightly"]}
    assert prune_schedules() == {}
    assert ScheduleRecord.objects.filter(name="nightly").exists()


def test_the_worker_command_prunes_when_it_starts(settings: Any) -> None:
    ScheduleRecord.objects.create(name="gone")
    settings.HEPHAESTUS = {"SCHEDULES": nightly()}
    call_command("hephaestus_worker", "--once", stdout=StringIO())
    assert list(ScheduleRecord.objects.values_list("name", flat=True)) == ["nightly"]
