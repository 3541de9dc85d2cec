"""The instance page links parent and children both ways, and the parent's graph shows each
child's status on its child step's box, linking to the child."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace

import pytest
from django.test import Client

from hephaestus_django import LocalRunner, Status
from hephaestus_django.core import engine
from hephaestus_django.diagram import build_diagram, progress_of, render_svg
from hephaestus_django.runtime import backends, configure
from hephaestus_django.storage import DjangoStorage
from tests import childflows
from tests.support.admin import detail_url, section, shown

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()


def _child_box(page: str, step: str) -> str:
    """The graph's box of ``step`` (with the link around it, if any)."""
    match = re.search(
        rf'(<a class="hx-node-link" href="[^"]*">)?<g class="hx-node[^"]*" '
        rf'data-step="tests\.childflows\.{step}">.*?</g>(</a>)?',
        page,
        re.DOTALL,
    )
    assert match, f"no box for {step}"
    return match.group(0)


def test_the_parents_page_lists_its_children_and_links_them(admin_client: Client) -> None:
    order_id = childflows.SlowOrder.start({"order": 31})
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    page = shown(admin_client, order_id)
    children = section(page, "children")
    assert "ShipSlowly" in children
    assert f'href="{detail_url(child_id)}"' in children
    assert "tests.childflows.SlowShipment" in children
    assert "hx-status-waiting" in children
    box = _child_box(page, "ShipSlowly")
    assert box.startswith(f'<a class="hx-node-link" href="{detail_url(child_id)}">')
    assert "child waiting" in box
    assert f"child {child_id} (SlowShipment): waiting" in box


def test_the_childs_page_links_its_parent(admin_client: Client) -> None:
    order_id = childflows.SlowOrder.start({"order": 32})
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    overview = section(shown(admin_client, child_id), "overview")
    parent = re.search(r'<tr id="hx-parent">.*?</tr>', overview, re.DOTALL)
    assert parent, overview
    assert f'href="{detail_url(order_id)}"' in parent.group(0)
    assert "tests.childflows.SlowOrder" in parent.group(0)
    assert "its step ShipSlowly waits for this child" in parent.group(0)
    assert 'id="hx-children"' not in shown(admin_client, child_id)


def test_the_graph_follows_the_childs_end(admin_client: Client) -> None:
    order_id = childflows.SlowOrder.start({"order": 33})
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    childflows.SlowShipment.resume(child_id, "picked_up")
    assert childflows.SlowOrder.get(order_id).status is Status.COMPLETED
    page = shown(admin_client, order_id)
    box = _child_box(page, "ShipSlowly")
    assert "child completed" in box
    assert "hx-status-completed" in section(page, "children")


def test_a_deleted_child_or_parent_is_named_without_a_link(admin_client: Client) -> None:
    order_id = childflows.SlowOrder.start({"order": 34})
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    second = childflows.SlowOrder.start({"order": 35})
    orphan = childflows.SlowOrder.get(second).children["ship_slowly"]
    storage = backends.storage()
    storage.delete(child_id)
    storage.delete(second)
    page = shown(admin_client, order_id)
    assert "no longer exists" in section(page, "children")
    assert f'href="{detail_url(child_id)}"' not in page
    box = _child_box(page, "ShipSlowly")
    assert "child gone" in box
    assert not box.startswith("<a")
    overview = section(shown(admin_client, orphan), "overview")
    assert "no longer exists (deleted or pruned)" in overview
    assert f'href="{detail_url(second)}"' not in overview


def test_an_instance_without_relatives_shows_none(admin_client: Client) -> None:
    plain = childflows.Shipment.start({"order": 36})
    page = shown(admin_client, plain)
    assert 'id="hx-children"' not in page
    assert 'id="hx-parent"' not in page


def test_a_badge_and_a_link_keep_the_svg_well_formed_and_escaped() -> None:
    order = childflows.SlowOrder
    instance = engine.start(engine.new_instance(order, {"order": 37}))
    progress = replace(
        progress_of(instance),
        badges={childflows.ShipSlowly: "child <waiting>"},
        links={childflows.ShipSlowly: '/admin/x/?a=1&b="2"'},
    )
    svg = render_svg(build_diagram(order.graph), progress)
    root = ET.fromstring(svg)  # well-formed, or this raises
    link = root.find("{http://www.w3.org/2000/svg}a")
    assert link is not None
    assert link.get("href") == '/admin/x/?a=1&b="2"'
    assert "child &lt;waiting&gt;" in svg
