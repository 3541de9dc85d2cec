"""Rewind and fork in the admin: permissions, the confirmation page (what each step would forget),
stale pages, refusals as messages, never a server error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import UUID

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client

from hephaestus_django import LocalRunner, Status
from hephaestus_django.core.children import children_of
from hephaestus_django.core.rewind import FORKED_FROM_KEY
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.childflows import ShipSlowly, SlowOrder, SlowShipment
from tests.rewinds import BROKEN, TRAIL, Bill, Fetch, Pipeline, Price
from tests.support import rewind_maps
from tests.support.admin import messages_of, shown, url
from tests.support.rewind_maps import RewindInvoice, RewindLines

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
    assert f'<option value="{Bill.path()}"' not in page  # never reached: not offered
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


def test_the_graph_boxes_pick_the_step_of_a_rewind(admin_client: Client) -> None:
    instance_id = failed_at_price()
    before = Pipeline.get(instance_id)

    page = admin_client.get(url("rewind", instance_id)).content.decode()
    assert f'href="?step={Price.path()}"' in page  # each step offered is a link
    assert f'href="?step={Fetch.path()}"' in page
    assert f'href="?step={Bill.path()}"' not in page  # never reached: no link
    assert '<th scope="row">Picked</th>' not in page

    response = admin_client.get(url("rewind", instance_id), {"step": Price.path()})

    assert response.status_code == 200
    page = response.content.decode()
    assert '<th scope="row">Picked</th><td>Price</td>' in page
    assert '<th scope="row">Forgotten</th><td>Price</td>' in page
    assert f'<option value="{Price.path()}" selected>Price</option>' in page
    assert Pipeline.get(instance_id).revision == before.revision  # picking changes nothing

    # The form still posts as before, with the picked step.
    posted = admin_client.post(
        url("rewind", instance_id), {"revision": before.revision, "step": Price.path()}
    )
    assert posted.status_code == 302
    assert Pipeline.get(instance_id).status is Status.WAITING


def test_a_step_the_page_does_not_offer_picks_nothing(admin_client: Client) -> None:
    instance_id = failed_at_price()
    for step in (Bill.path(), "no.such.Step", ""):
        response = admin_client.get(url("rewind", instance_id), {"step": step})
        assert response.status_code == 200
        assert '<th scope="row">Picked</th>' not in response.content.decode()


def test_the_graph_boxes_pick_the_step_of_a_fork(admin_client: Client) -> None:
    instance_id = failed_at_price()

    response = admin_client.get(url("fork", instance_id), {"step": Fetch.path()})

    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="?step={Price.path()}"' in page
    assert '<th scope="row">Picked</th><td>Fetch</td>' in page
    assert '<th scope="row">Forgotten</th><td>Fetch, Price</td>' in page
    assert f'<option value="{Fetch.path()}" selected>Fetch</option>' in page


def test_picking_a_map_step_states_how_many_items_are_forgotten(admin_client: Client) -> None:
    rewind_maps.reset()
    instance_id = RewindInvoice.start({"lines": rewind_maps.lines(3)})

    response = admin_client.get(url("rewind", instance_id), {"step": RewindLines.path()})

    page = response.content.decode()
    assert '<th scope="row">Map RewindLines</th><td>3 item(s) forgotten; all run again</td>' in page
    rewind_maps.reset()


def test_picking_a_child_step_states_which_child_is_cancelled(admin_client: Client) -> None:
    parent_id = SlowOrder.start({"order": 11})
    child_id = children_of(SlowOrder.get(parent_id))[ShipSlowly.step_key]

    response = admin_client.get(url("rewind", parent_id), {"step": ShipSlowly.path()})

    page = response.content.decode()
    assert f"<td>{child_id} (cancelled); a new child is started</td>" in page
    assert SlowShipment.get(child_id).status is Status.WAITING  # the page changes nothing
