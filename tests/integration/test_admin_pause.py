"""Pause and unpause in the admin: permissions, the paused badge and filter, stale pages refused,
refusals as messages."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client

from hephaestus_django import LocalRunner, Status
from hephaestus_django.core.pause import PAUSED_KEY
from hephaestus_django.models import WorkflowPauseRecord
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.pauses import TRAIL, Gated
from tests.support.admin import listed, messages_of, row_of, shown, url

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    TRAIL.clear()
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()
    TRAIL.clear()


def test_pausing_and_unpausing_through_the_admin(admin_client: Client) -> None:
    instance_id = Gated.start({})
    before = Gated.get(instance_id)
    page = shown(admin_client, instance_id)
    assert 'id="hx-pause"' in page
    assert 'id="hx-unpause"' not in page
    assert admin_client.get(url("pause", instance_id)).status_code == 200

    response = admin_client.post(
        url("pause", instance_id), {"revision": before.revision, "reason": "deploying"}
    )

    assert messages_of(response) == [
        ("success", "Paused (reason: deploying); the instance is now waiting.")
    ]
    paused = Gated.get(instance_id)
    assert paused.runtime_metadata[PAUSED_KEY]["reason"] == "deploying"
    page = shown(admin_client, instance_id)
    assert 'id="hx-paused"' in page
    assert 'id="hx-unpause"' in page
    assert 'id="hx-pause"' not in page
    assert "paused</span>" in row_of(listed(admin_client, paused="yes"), instance_id)
    assert str(instance_id) not in listed(admin_client, paused="no")
    entry = LogEntry.objects.get(object_id=str(instance_id))
    assert (entry.action_flag, entry.change_message) == (CHANGE, "Paused (reason: deploying)")

    unpause_page = admin_client.get(url("unpause", instance_id)).content.decode()
    assert "deploying" in unpause_page
    response = admin_client.post(url("unpause", instance_id), {"revision": paused.revision})
    assert messages_of(response) == [("success", "Unpaused; the instance is now waiting.")]
    assert PAUSED_KEY not in Gated.get(instance_id).runtime_metadata
    assert str(instance_id) not in listed(admin_client, paused="yes")


def test_pausing_an_ended_instance_is_refused(admin_client: Client) -> None:
    instance_id = Gated.start({})
    seen = Gated.get(instance_id).revision
    Gated.resume(instance_id, "go")  # it moved on meanwhile (and completed)
    response = admin_client.post(url("pause", instance_id), {"revision": seen})
    assert messages_of(response) == [
        (
            "error",
            "This instance cannot be paused: it is completed, and only a pending, "
            "running or waiting instance can be.",
        )
    ]


def test_a_pause_page_shown_before_the_instance_changed_is_refused(admin_client: Client) -> None:
    instance_id = Gated.start({})
    seen = Gated.get(instance_id).revision
    Gated.pause(instance_id)
    Gated.unpause(instance_id)
    now = Gated.get(instance_id).revision
    response = admin_client.post(url("pause", instance_id), {"revision": seen})
    assert messages_of(response) == [
        (
            "error",
            f"Nothing was done: this instance changed since the page was loaded (it was at "
            f"revision {seen}, it is now at {now}). Review it below and try again.",
        )
    ]
    assert Gated.get(instance_id).revision == now


def test_pause_needs_its_permission(staff_client: Callable[..., Client]) -> None:
    instance_id = Gated.start({})
    revision = Gated.get(instance_id).revision
    viewer = staff_client("view_workflowinstance", "cancel_workflowinstance")
    assert 'id="hx-pause"' not in shown(viewer, instance_id)
    for name in ("pause", "unpause"):
        assert viewer.get(url(name, instance_id)).status_code == 403
        assert viewer.post(url(name, instance_id), {"revision": revision}).status_code == 403
    assert Gated.get(instance_id).revision == revision
    operator = staff_client("view_workflowinstance", "pause_workflowinstance")
    assert 'id="hx-pause"' in shown(operator, instance_id)


def test_unpausing_an_instance_that_is_not_paused_is_refused(admin_client: Client) -> None:
    instance_id = Gated.start({})
    response = admin_client.get(url("unpause", instance_id))
    assert messages_of(response) == [("error", "This instance is not paused.")]
    assert Gated.get(instance_id).status is Status.WAITING


def test_the_held_workflows_page_lists_holds_and_releases_them(admin_client: Client) -> None:
    instance_id = Gated.start({})
    Gated.pause_all(reason="deploy 42")
    page = admin_client.get("/admin/hephaestus_django/workflowpauserecord/").content.decode()
    assert Gated.path() in page
    assert "deploy 42" in page
    assert "paused</span>" in row_of(listed(admin_client, paused="yes"), instance_id)

    (hold,) = WorkflowPauseRecord.objects.all()
    response = admin_client.post(
        "/admin/hephaestus_django/workflowpauserecord/",
        {"action": "release", "_selected_action": [str(hold.pk)]},
    )
    assert response.status_code == 302
    assert not WorkflowPauseRecord.objects.exists()
    assert PAUSED_KEY not in Gated.get(instance_id).runtime_metadata
