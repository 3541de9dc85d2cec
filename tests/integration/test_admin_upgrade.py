"""Upgrade in the admin: permission, the confirmation page (target version and each step's fate),
stale pages, refusals as messages, never a server error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import UUID

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client

from hephaestus_django import LocalRunner, Status
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.support.admin import messages_of, shown, url
from tests.versions import Newsletter, Onboarding, OnboardingV1, OnboardingV2

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()


def waiting_v1() -> UUID:
    return Onboarding.start({"email": "ada@example.com"}, version=1)


def test_the_upgrade_page_names_the_target_and_each_steps_fate(admin_client: Client) -> None:
    instance_id = waiting_v1()
    before = Onboarding.get(instance_id)
    response = admin_client.get(url("upgrade", instance_id))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<td>version 1 (OnboardingV1)</td>" in page
    assert "<td>version 2 (OnboardingV2)</td>" in page
    assert "SendWelcome (completed)</th><td>becomes SendWelcomeEmail</td>" in page
    assert "LegacyCheck (completed)</th><td>dropped: its history entries and result" in page
    assert "AwaitVerification (waiting)</th><td>kept</td>" in page
    assert f'name="revision" value="{before.revision}"' in page
    assert 'name="to_version" value="2"' in page
    assert 'value="Upgrade"' in page
    assert Onboarding.get(instance_id).revision == before.revision  # showing changes nothing


def test_upgrading_through_the_admin(admin_client: Client) -> None:
    instance_id = waiting_v1()
    revision = Onboarding.get(instance_id).revision
    assert 'id="hx-upgrade"' in shown(admin_client, instance_id)
    response = admin_client.post(
        url("upgrade", instance_id), {"revision": revision, "to_version": 2}
    )
    assert response.status_code == 302
    assert messages_of(response) == [
        ("success", "Upgraded from version 1 to 2; the instance is now waiting.")
    ]
    after = Onboarding.get(instance_id)
    assert (after.workflow, after.workflow_version) == (OnboardingV2, 2)
    entry = LogEntry.objects.get(object_id=str(instance_id))
    assert (entry.action_flag, entry.change_message) == (
        CHANGE,
        "Upgraded from version 1 to 2",
    )
    # at the newest version: no button, and the page refuses
    assert 'id="hx-upgrade"' not in shown(admin_client, instance_id)
    response = admin_client.get(url("upgrade", instance_id))
    assert messages_of(response) == [
        (
            "error",
            "This instance cannot be upgraded: no newer version of Onboarding declares an "
            "upgrade from version 2.",
        )
    ]


def test_upgrade_needs_its_permission(staff_client: Callable[..., Client]) -> None:
    instance_id = waiting_v1()
    revision = Onboarding.get(instance_id).revision
    viewer = staff_client("view_workflowinstance", "cancel_workflowinstance")
    assert 'id="hx-upgrade"' not in shown(viewer, instance_id)
    assert viewer.get(url("upgrade", instance_id)).status_code == 403
    response = viewer.post(url("upgrade", instance_id), {"revision": revision, "to_version": 2})
    assert response.status_code == 403
    assert Onboarding.get(instance_id).workflow is OnboardingV1
    operator = staff_client("view_workflowinstance", "upgrade_workflowinstance")
    assert 'id="hx-upgrade"' in shown(operator, instance_id)
    response = operator.post(url("upgrade", instance_id), {"revision": revision, "to_version": 2})
    assert response.status_code == 302
    assert Onboarding.get(instance_id).workflow is OnboardingV2


def test_a_stale_page_is_refused(admin_client: Client) -> None:
    instance_id = waiting_v1()
    seen = Onboarding.get(instance_id).revision
    Onboarding.cancel(instance_id, reason="changed meanwhile")
    now = Onboarding.get(instance_id).revision
    response = admin_client.post(url("upgrade", instance_id), {"revision": seen, "to_version": 2})
    assert messages_of(response) == [
        (
            "error",
            f"Nothing was done: this instance changed since the page was loaded (it was at "
            f"revision {seen}, it is now at {now}). Review it below and try again.",
        )
    ]
    assert Onboarding.get(instance_id).workflow is OnboardingV1


def test_a_changed_target_version_is_refused(admin_client: Client) -> None:
    instance_id = waiting_v1()
    revision = Onboarding.get(instance_id).revision
    response = admin_client.post(
        url("upgrade", instance_id), {"revision": revision, "to_version": 3}
    )
    (message,) = messages_of(response)
    assert message[0] == "error"
    assert "the version to upgrade to changed since the page was loaded" in message[1]
    assert Onboarding.get(instance_id).workflow is OnboardingV1


def test_an_instance_the_upgrade_does_not_cover_is_refused_with_the_reason(
    admin_client: Client,
) -> None:
    instance_id = Onboarding.start({"legacy_down": True}, version=1)
    assert Onboarding.get(instance_id).status is Status.FAILED
    for response in (
        admin_client.get(url("upgrade", instance_id)),
        admin_client.post(url("upgrade", instance_id), {"revision": 1, "to_version": 2}),
    ):
        assert response.status_code == 302
        assert messages_of(response)[-1] == (
            "error",
            "This instance cannot be upgraded: it is failed at step LegacyCheck, which "
            "version 2 drops.",
        )
    assert Onboarding.get(instance_id).workflow is OnboardingV1


@pytest.mark.parametrize(
    "form",
    [{}, {"revision": "x", "to_version": "2"}, {"revision": "1", "to_version": "<script>"}],
)
def test_malformed_posts_never_fail_the_page(admin_client: Client, form: dict[str, str]) -> None:
    instance_id = waiting_v1()
    response = admin_client.post(url("upgrade", instance_id), form)
    assert response.status_code in (200, 302)
    assert Onboarding.get(instance_id).workflow is OnboardingV1


def test_a_plain_workflow_has_nothing_to_upgrade_to(admin_client: Client) -> None:
    instance_id = Newsletter.start({})
    assert 'id="hx-upgrade"' not in shown(admin_client, instance_id)
    response = admin_client.get(url("upgrade", instance_id))
    assert messages_of(response)[0][1].startswith("This instance cannot be upgraded")
    response = admin_client.get(url("upgrade", "not-an-id"))
    assert response.status_code == 302
