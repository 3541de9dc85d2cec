"""The schedules in the admin: a backfill through its form, preview and confirmation; the links
and the filter that select exactly a schedule's instances (the test client, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission

from hephaestus_django import Status
from hephaestus_django.models import ScheduleRecord, WorkflowInstance
from hephaestus_django.runtime.schedules import MAX_BACKFILL, tick_id
from hephaestus_django.storage import DjangoStorage
from tests.processes.workflows import Scheduled

pytestmark = pytest.mark.django_db

LIST = "/admin/hephaestus_django/schedulerecord/"
BACKFILL = f"{LIST}nightly/backfill/"
INSTANCES = "/admin/hephaestus_django/workflowinstance/"


def schedules(**more: dict[str, Any]) -> dict[str, Any]:
    entry = {"WORKFLOW": Scheduled.path(), "CRON": "0 2 * * *", "TIMEZONE": "Europe/Berlin"}
    return {"SCHEDULES": {"nightly": entry, **more}}


@pytest.fixture(autouse=True)
def configured(settings: Any) -> None:
    settings.HEPHAESTUS = schedules(
        minutely={"WORKFLOW": Scheduled.path(), "CRON": "* * * * *"},
    )


def started() -> list[Any]:
    return DjangoStorage().query(workflow=Scheduled)


def preview(client: Any, start: str, end: str) -> Any:
    response = client.post(BACKFILL, {"start": start, "end": end})
    assert response.status_code == 200
    return response


def test_a_backfill_is_previewed_then_confirmed_and_starts_each_tick_once(
    admin_client: Any,
) -> None:
    page = admin_client.get(BACKFILL)
    assert page.status_code == 200
    assert "In Europe/Berlin" in page.content.decode()
    shown = preview(admin_client, "2025-01-01T00:00", "2025-01-03T12:00")
    found = shown.context["preview"]
    assert (len(found.ticks), found.started, found.to_start) == (3, 0, 3)
    assert 'id="hx-confirm" value="Yes, start 3 instance(s)"' in shown.content.decode()
    assert started() == []  # a preview starts nothing
    data = {"start": "2025-01-01T00:00", "end": "2025-01-03T12:00"}
    done = admin_client.post(BACKFILL, {**data, "fingerprint": found.fingerprint}, follow=True)
    assert done.redirect_chain[-1][0] == f"{INSTANCES}?schedule=nightly"
    assert "3 tick(s), 3 instance(s) started, 0 started already" in done.content.decode()
    instances = started()
    assert sorted(i.id for i in instances) == sorted(i for _t, i in found.ticks)
    assert all(i.status is Status.COMPLETED for i in instances)
    # the ticks are 02:00 in Berlin, and the same range again starts nothing
    assert found.ticks[0][0].isoformat() == "2025-01-01T02:00:00+01:00"
    again = preview(admin_client, "2025-01-01T00:00", "2025-01-03T12:00").context["preview"]
    assert (again.started, again.to_start) == (3, 0)
    admin_client.post(BACKFILL, {**data, "fingerprint": again.fingerprint})
    assert len(started()) == 3


def test_a_range_with_an_offset_is_read_as_given(admin_client: Any) -> None:
    # 02:00 in Berlin is 01:00 UTC in January: one tick between 00:30 and 00:59 a day later
    found = preview(admin_client, "2025-01-01T00:30+00:00", "2025-01-02T00:59:59+00:00")
    [(tick, instance_id)] = found.context["preview"].ticks
    assert tick.isoformat() == "2025-01-01T02:00:00+01:00"
    assert instance_id == tick_id("nightly", tick)


def test_more_ticks_than_the_maximum_are_refused_with_a_form_error(admin_client: Any) -> None:
    url = f"{LIST}minutely/backfill/"
    response = admin_client.post(url, {"start": "2025-01-01T00:00", "end": "2025-01-02T00:00"})
    assert response.status_code == 200
    assert response.context["preview"] is None
    assert f"more than {MAX_BACKFILL} ticks" in response.content.decode()
    assert 'id="hx-confirm"' not in response.content.decode()
    forced = admin_client.post(
        url, {"start": "2025-01-01T00:00", "end": "2025-01-02T00:00", "fingerprint": "x" * 32}
    )
    assert forced.status_code == 200
    assert started() == []


def test_a_confirmation_of_another_range_is_stale_and_refused(admin_client: Any) -> None:
    found = preview(admin_client, "2025-01-01T00:00", "2025-01-03T12:00").context["preview"]
    response = admin_client.post(
        BACKFILL,
        {"start": "2025-01-01T00:00", "end": "2025-01-09T12:00", "fingerprint": found.fingerprint},
    )
    assert response.status_code == 200
    assert "changed since the preview" in response.content.decode()
    assert started() == []
    # the page now shows the preview of the range posted, which can be confirmed
    fresh = response.context["preview"]
    assert len(fresh.ticks) == 9
    admin_client.post(
        BACKFILL,
        {"start": "2025-01-01T00:00", "end": "2025-01-09T12:00", "fingerprint": fresh.fingerprint},
    )
    assert len(started()) == 9


@pytest.mark.parametrize(
    ("start", "end", "said"),
    [
        ("yesterday", "2025-01-01T00:00", "Not a time"),
        ("2025-01-03T00:00", "2025-01-01T00:00", "not a range in the past"),
        ("2025-01-01T00:00", "2999-01-01T00:00", "not a range in the past"),
        ("2025-01-01T00:00", "", "This field is required"),
        ("2025-01-01T00:00\x00", "2025-01-02T00:00", "Null characters are not allowed"),
        ("2" * 500, "2025-01-02T00:00", "at most 64 characters"),
        ("2025-13-01T00:00", "2025-01-02T00:00", "Not a time"),
    ],
)
def test_bad_input_is_a_form_error_and_starts_nothing(
    admin_client: Any, start: str, end: str, said: str
) -> None:
    for fingerprint in ("", "0" * 32):
        response = admin_client.post(
            BACKFILL, {"start": start, "end": end, "fingerprint": fingerprint}
        )
        assert response.status_code == 200
        assert said in response.content.decode()
    assert started() == []


def test_the_backfill_needs_the_operate_permission(
    client: Any, django_user_model: Any, admin_client: Any
) -> None:
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_schedulerecord"))
    client.force_login(viewer)
    data = {"start": "2025-01-01T00:00", "end": "2025-01-03T12:00"}
    assert client.get(BACKFILL).status_code == 403
    assert client.post(BACKFILL, data).status_code == 403
    assert started() == []
    viewer.user_permissions.add(Permission.objects.get(codename="operate_schedule"))
    client.force_login(django_user_model.objects.get(pk=viewer.pk))
    assert client.get(BACKFILL).status_code == 200


def test_an_unknown_schedule_goes_back_to_the_list_with_a_message(admin_client: Any) -> None:
    response = admin_client.get(f"{LIST}weekly%00/backfill/", follow=True)
    assert response.status_code == 200
    assert "No schedule named" in response.content.decode()


def test_the_list_links_exactly_a_schedules_instances(admin_client: Any, settings: Any) -> None:
    runner_storage = DjangoStorage()
    # Two schedules of one workflow, and an instance of it started by hand.
    settings.HEPHAESTUS = schedules(weekly={"WORKFLOW": Scheduled.path(), "CRON": "0 3 * * 1"})
    ScheduleRecord.objects.create(name="nightly")
    ScheduleRecord.objects.create(name="weekly")
    from hephaestus_django.conf import scheduler

    scheduler().trigger("nightly", runner_storage)
    scheduler().trigger("weekly", runner_storage)
    Scheduled.start({}, storage=runner_storage)
    [nightly] = runner_storage.query(schedule="nightly")
    [weekly] = runner_storage.query(schedule="weekly")
    assert len(started()) == 3
    assert [i.id for i in Scheduled.list(schedule="weekly")] == [weekly.id]
    assert list(WorkflowInstance.objects.of_schedule("nightly").values_list("pk", flat=True)) == [
        nightly.id
    ]
    page = admin_client.get(LIST).content.decode()
    assert f"{INSTANCES}?schedule=nightly" in page
    assert f"{LIST}nightly/backfill/" in page
    listed = admin_client.get(INSTANCES, {"schedule": "nightly"})
    assert listed.status_code == 200
    shown = [row.pk for row in listed.context["cl"].result_list]
    assert shown == [nightly.id]
    assert weekly.id not in shown
    # a name no longer configured still filters (old links keep working), a bad one is refused
    assert admin_client.get(INSTANCES, {"schedule": "gone"}).status_code == 200
    assert admin_client.get(INSTANCES, {"schedule": "a\x00b"}).status_code in (200, 302)
