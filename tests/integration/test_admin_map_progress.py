"""A map step's progress on the admin's instance page: items done, failed, in flight and in
all, in the steps panel and under the map's node of the graph, read by one aggregate per map
step (no item row loaded)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from hephaestus_django.runtime import InMemoryDispatcher, configure
from hephaestus_django.runtime.queued import QueuedRunner
from hephaestus_django.storage import DjangoStorage
from tests.support import maps
from tests.support.admin import detail_url, section
from tests.support.maps import Invoice, lines

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dispatcher() -> Iterator[InMemoryDispatcher]:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    maps.reset()
    configure(storages={"default": DjangoStorage()}, runner=runner)
    yield dispatcher
    runner.close()
    configure()


def page_of(client: Client, instance_id: object) -> str:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(detail_url(instance_id))
    assert response.status_code == 200
    items = [q["sql"] for q in queries.captured_queries if "workflow_map_items" in q["sql"]]
    assert len(items) == 1  # one aggregate for the one map step
    assert "count(" in items[0]
    return unescape(response.content.decode())


def test_a_running_map_shows_its_items_done_in_flight_and_in_all(
    admin_client: Client, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = Invoice.start({"lines": lines(10)})
    dispatcher.drain(limit=1 + 4)  # the map step's job, then four items
    storage = DjangoStorage()
    storage.mark_map_item(instance_id, maps.ChargeLines.path(), 9)  # as a job running it would
    page = page_of(admin_client, instance_id)
    steps = section(page, "steps")
    assert "map items" in steps
    assert "4 done, 0 failed, 1 in flight, of 10" in steps
    graph = section(page, "graph")
    assert "4/10 done, 1 in flight" in graph


def test_a_map_with_a_failed_item_and_a_completed_map_show_their_counts(
    admin_client: Client, dispatcher: InMemoryDispatcher
) -> None:
    items = lines(5)
    items[3]["fail"] = "declined"
    failed = Invoice.start({"lines": items})
    dispatcher.drain()
    page = page_of(admin_client, failed)
    assert "1 failed" in section(page, "steps")
    assert "1 failed" in section(page, "graph")

    completed = Invoice.start({"lines": lines(3)})
    dispatcher.drain()
    page = page_of(admin_client, completed)
    assert "3 done, 0 failed, 0 in flight, of 3" in section(page, "steps")
    assert "3/3 done" in section(page, "graph")
