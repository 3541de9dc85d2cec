"""Rewind and fork in the admin: permissions, the confirmation page (what each step would forget),
stale pages, refusals as messages, never a server error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import UUID

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client

from hephaestus_django import LocalRunner, Status
from hephaestus_django.core.rewind import FORKED_FROM_KEY
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.rewinds import BROKEN, TRAIL, Bill, Fetch, Pipeline, Price
from tests.support.admin import messages_of, shown, url

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    TRAIL.clear()
    BROKEN.clear()
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()
    TRAIL.clear()
    BROKEN.clear()


def failed_at_price() -> UUID:
    BROKEN.add("price")
    instance_id = Pipeline.start({})
    BROKEN.clear()  # the fix is deployed
    return instance_id


def test_the_rewind_page_states_what_each_step_would_forget(admin_client: Client) -> None:
    instance_id = failed_at_price()
    before = Pipeline.get(instance_id)
    assert 'id="hx-rewind"' in shown(admin_client, instance_id)

    response = admin_client.get(url("rewind", instance_id))

    assert response.status_code == 200
    page = response.content.decode()
    assert '<th scope="row">to Fetch</th><td>forgets Fetch, Price; then Fetch run' in page
    assert "compensations if ticked: Fetch" in page
    assert '<th scope="row">to Price</th><td>forgets Price; then Price run</td>' in page
    assert f'<option value="{Price.path()}">Price</option>' in page
    assert Bill.path() not in page  # never reached: not offered
    assert 'name="compensate"' in page
    assert f'name="revision" value="{before.revision}"' in page
    assert Pipeline.get(instance_id).revision == before.revision  # showing changes nothing


def test_rewinding_through_the_admin(admin_client: Client) -> None:
    instance_id = failed_at_price()
    revision = Pipeline.get(instance_id).revision

    response = admin_client.post(
        url("rewind", instance_id), {"revision": revision, "step": Price.path()}
    )

    assert response.status_code == 302
    assert messages_of(response) == [("success", "Rewound to Price; the instance is now waiting.")]
    after = Pipeline.get(instance_id)
    assert after.status is Status.WAITING
    assert TRAIL[after.id] == ["fetch", "price", "price", "bill"]
    entry = LogEntry.objects.get(object_id=str(instance_id))
    assert (entry.action_flag, entry.change_message) == (CHANGE, "Rewound to Price")


def test_a_rewind_with_compensations_through_the_admin(admin_client: Client) -> None:
    instance_id = failed_at_price()
    revision = Pipeline.get(instance_id).revision
    response = admin_client.post(
        url("rewind", instance_id),
        {"revision": revision, "step": Fetch.path(), "compensate": "on"},
    )
    assert messages_of(response) == [
        ("success", "Rewound to Fetch, compensating Fetch first; the instance is now waiting.")
    ]
    assert TRAIL[instance_id][:3] == ["fetch", "price", "undo fetch"]


def test_a_stale_rewind_page_is_refused(admin_client: Client) -> None:
    instance_id = failed_at_price()
    seen = Pipeline.get(instance_id).revision
    Pipeline.rewind(instance_id, to=Price)
    now = Pipeline.get(instance_id).revision
    response = admin_client.post(
        url("rewind", instance_id), {"revision": seen, "step": Fetch.path()}
    )
    assert messages_of(response) == [
        (
            "error",
            f"Nothing was done: this instance changed since the page was loaded (it was at "
            f"revision {seen}, it is now at {now}). Review it below and try again.",
        )
    ]
    assert Pipeline.get(instance_id).revision == now


def test_a_step_not_offered_is_a_form_error(admin_client: Client) -> None:
    instance_id = failed_at_price()
    revision = Pipeline.get(instance_id).revision
    response = admin_client.post(url("rewind", instance_id), {"revision": revision, "step": "x.Y"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Pipeline.get(instance_id).revision == revision


def test_rewind_and_fork_need_their_permissions(staff_client: Callable[..., Client]) -> None:
    instance_id = failed_at_price()
    revision = Pipeline.get(instance_id).revision
    viewer = staff_client("view_workflowinstance", "retry_workflowinstance")
    page = shown(viewer, instance_id)
    assert 'id="hx-rewind"' not in page
    assert 'id="hx-fork"' not in page
    for name in ("rewind", "fork"):
        assert viewer.get(url(name, instance_id)).status_code == 403
        post = viewer.post(url(name, instance_id), {"revision": revision, "step": Price.path()})
        assert post.status_code == 403
    assert Pipeline.get(instance_id).revision == revision
    operator = staff_client(
        "view_workflowinstance", "rewind_workflowinstance", "fork_workflowinstance"
    )
    page = shown(operator, instance_id)
    assert 'id="hx-rewind"' in page
    assert 'id="hx-fork"' in page


def test_forking_through_the_admin_lands_on_the_copy(admin_client: Client) -> None:
    instance_id = failed_at_price()
    before = Pipeline.get(instance_id)
    assert 'id="hx-fork"' in shown(admin_client, instance_id)
    page = admin_client.get(url("fork", instance_id)).content.decode()
    assert '<th scope="row">to Price</th><td>forgets Price; then Price run</td>' in page

    response = admin_client.post(
        url("fork", instance_id), {"revision": before.revision, "step": Price.path()}
    )

    assert response.status_code == 302
    (copy,) = [i for i in Pipeline.list() if i.id != before.id]
    assert response["Location"] == url("change", copy.id)
    assert copy.runtime_metadata[FORKED_FROM_KEY]["id"] == str(instance_id)
    assert copy.status is Status.WAITING
    assert messages_of(response) == [
        ("success", f"Forked at Price as {copy.id}; the instance is now waiting.")
    ]
    assert Pipeline.get(instance_id).revision == before.revision
