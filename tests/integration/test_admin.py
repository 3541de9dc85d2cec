"""The admin changelist: columns, filters, search through the GIN index, cheap counts.

The instance page is tested in ``test_admin_detail``, the operations in
``test_admin_operations``, the graph in ``test_admin_graph``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hephaestus_django.admin.listing import CheapCountPaginator
from hephaestus_django.admin.search import context_filter
from hephaestus_django.core import engine
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.postgres.sql import COUNT_AND_ESTIMATE
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.support.admin import CHANGELIST, detail_url, listed, row_of
from tests.support.instances import stored

pytestmark = pytest.mark.django_db


def test_importing_the_admin_package_registers_the_model_admin() -> None:
    """Django's autodiscovery imports ``hephaestus_django.admin``: the package must register."""
    from django.contrib import admin

    from hephaestus_django import admin as hephaestus_admin
    from hephaestus_django.models import WorkflowInstance

    registered = admin.site.get_model_admin(WorkflowInstance)
    assert type(registered) is hephaestus_admin.WorkflowInstanceAdmin


def test_changelist_shows_the_columns(admin_client: Client, storage: DjangoStorage) -> None:
    waiting = stored(storage, flows.TwoWaits)
    page = listed(admin_client)
    assert str(waiting.id) in page
    assert 'title="tests.flows.TwoWaits, version 1">TwoWaits</span>' in page
    assert "Signature" in page  # current step, read from one key of the state
    assert "waiting" in page


def test_every_column_of_a_row(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, flows.TwoWaits)
    page = listed(admin_client)
    headers = re.findall(
        r'<th scope="col" class="[^"]*column-(\w+)[^"]*">.*?<div class="text">'
        r"<(?:a|span)[^>]*>([^<]+)<",
        page,
        re.DOTALL,
    )
    assert headers == [
        ("short_id", "Id / key"),
        ("workflow_name", "Workflow"),
        ("status_badge", "Status"),
        ("steps", "Current step"),
        ("inserted", "Inserted at"),
        ("updated", "Updated at"),
    ]
    row = row_of(page, instance.id)
    href = reverse("admin:hephaestus_django_workflowinstance_change", args=[instance.id])
    assert f'href="{href}"' in row
    assert f'<span class="hx-id" title="{instance.id}">{str(instance.id)[:8]}…</span>' in row
    assert '<span class="hx-version">v1</span>' in row  # the version, in the workflow's column
    assert '<span class="hx-badge hx-status-waiting">waiting</span>' in row
    # both waiting steps, as chips, in graph order
    assert re.search(r"hx-step-waiting.*Signature.*hx-step-waiting.*Payment", row, re.DOTALL)
    inserted = timezone.localtime(instance.inserted_at)
    assert f'<td class="field-inserted"><time datetime="{instance.inserted_at.isoformat()}"' in row
    assert f">{inserted:%Y-%m-%d %H:%M:%S}</time></td>" in row
    assert '<td class="field-updated"><time datetime=' in row


@pytest.mark.parametrize(
    ("workflow", "script", "tone", "step"),
    [
        (flows.IfElse, {}, "completed", "Done"),
        (flows.IfElse, {"check": "fail"}, "failed", "Check"),
        (flows.TwoWaits, {}, "waiting", "Signature"),
        (flows.Timed, {}, "waiting", "Wait"),
    ],
)
def test_the_current_step_column_by_status(
    admin_client: Client,
    storage: DjangoStorage,
    workflow: type[Any],
    script: dict[str, str],
    tone: str,
    step: str,
) -> None:
    instance = stored(storage, workflow, script=script)
    row = row_of(listed(admin_client), instance.id)
    assert re.search(rf'<span class="hx-step hx-step-{tone}" title="[^"]*">.*{step}</span>', row)
    assert ('class="hx-clock"' in row) == (workflow is flows.Timed)
    if workflow is flows.Timed:
        assert "timer fires timeout at" in row


def test_a_running_instance_shows_its_active_step(
    admin_client: Client, storage: DjangoStorage
) -> None:
    running = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    storage.put(running)
    row = row_of(listed(admin_client), running.id)
    assert '<span class="hx-badge hx-status-running">running</span>' in row
    assert re.search(r'hx-step-active" title="tests.flows.Check — running">Check<', row)


def test_malformed_state_keys_show_a_dash(admin_client: Client) -> None:
    row_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state) VALUES (%s, "
            "'tests.<script>alert(1)</script>', 'waiting', "
            '\'{"active_steps": 5, "waiting_steps": [1], "current_step": {}}\'::jsonb)',
            [row_id],
        )
    page = listed(admin_client)
    row = row_of(page, row_id)
    assert '<td class="field-steps">—</td>' in row
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in row


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("order_id=123", ["gold"]),
        ("customer.tier=gold", ["gold"]),
        ('{"customer": {"tier": "silver"}}', ["silver"]),
        ("order_id=123 customer.tier=silver", []),
        ('order_id="123"', []),
        ("TwoWaits", ["silver"]),
    ],
)
def test_search_by_context_values(
    admin_client: Client, storage: DjangoStorage, term: str, expected: list[str]
) -> None:
    rows = {
        "gold": stored(storage, order_id=123, customer={"tier": "gold"}),
        "silver": stored(storage, flows.TwoWaits, order_id=124, customer={"tier": "silver"}),
    }
    page = listed(admin_client, q=term)
    for name, instance in rows.items():
        assert (str(instance.id) in page) == (name in expected), name


def test_search_by_id(admin_client: Client, storage: DjangoStorage) -> None:
    one, other = stored(storage), stored(storage)
    page = listed(admin_client, q=str(one.id))
    assert str(one.id) in page
    assert str(other.id) not in page


def test_filter_by_status(admin_client: Client, storage: DjangoStorage) -> None:
    done, waiting = stored(storage), stored(storage, flows.TwoWaits)
    page = listed(admin_client, status__exact="waiting")
    assert str(waiting.id) in page
    assert str(done.id) not in page


def test_filter_by_workflow_lists_the_registered_workflows(
    admin_client: Client, storage: DjangoStorage
) -> None:
    if_else, two_waits = stored(storage), stored(storage, flows.TwoWaits)
    page = listed(admin_client)
    assert 'href="?workflow=tests.flows.TwoWaits"' in page
    assert ">TwoWaits</a>" in page
    page = listed(admin_client, workflow="tests.flows.TwoWaits")
    assert str(two_waits.id) in page
    assert str(if_else.id) not in page


def test_filter_by_version(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage)
    assert 'href="?version=1"' in listed(admin_client)
    assert str(instance.id) in listed(admin_client, version="1")
    assert str(instance.id) not in listed(admin_client, version="2")
    response = admin_client.get(CHANGELIST, {"version": "one"})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_filter_by_date(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage)
    page = listed(admin_client)
    for field in ("inserted_at", "updated_at"):
        links = re.findall(rf'href="\?({field}__gte=[^"]+)"', page)
        assert len(links) == 4  # today, past 7 days, this month, this year
        for link in links:
            response = admin_client.get(f"{CHANGELIST}?{unescape(link)}")
            assert str(instance.id) in response.content.decode(), link
        earlier = {f"{field}__lt": f"{timezone.now() - timedelta(days=400):%Y-%m-%d %H:%M:%S%z}"}
        assert str(instance.id) not in listed(admin_client, **earlier)


def test_the_search_box_explains_the_syntax(admin_client: Client) -> None:
    page = listed(admin_client)
    help_text = page.split('id="searchbar_helptext"')[1].split("</div>")[0]
    for example in ("order_id=123", "customer.tier=gold", "{&quot;customer&quot;"):
        assert example in help_text


def test_a_search_term_is_echoed_escaped(admin_client: Client, storage: DjangoStorage) -> None:
    instance = stored(storage, note="<script>alert(1)</script>")
    page = listed(admin_client, q="note=<script>alert(1)</script>")
    assert str(instance.id) in page
    assert "<script>alert(1)</script>" not in page
    assert 'value="note=&lt;script&gt;alert(1)&lt;/script&gt;"' in page


@pytest.mark.parametrize("rows", [10, 100])
def test_changelist_queries_do_not_grow_with_rows(
    admin_client: Client, storage: DjangoStorage, django_assert_max_num_queries: Any, rows: int
) -> None:
    for number in range(rows):
        stored(storage, flows.TwoWaits if number % 2 else flows.IfElse)
    admin_client.get(CHANGELIST)  # the session and user, once, like any later page load
    with django_assert_max_num_queries(4) as captured:
        page = listed(admin_client)
    assert page.count('class="hx-id"') == rows
    tables = [q["sql"] for q in captured.captured_queries if "workflow_instances" in q["sql"]]
    assert len(tables) == 2  # one count, one page of rows


def test_an_unfiltered_list_on_a_large_table_shows_the_estimate(
    admin_client: Client, storage: DjangoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        stored(storage)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE workflow_instances")
    monkeypatch.setattr(CheapCountPaginator, "COUNT_LIMIT", 2)
    with CaptureQueriesContext(connection) as captured:
        page = listed(admin_client)
    assert "about 3</span> workflow instances" in page
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts
    assert all("LIMIT" in sql.upper() for sql in counts)  # never a count of the whole table
    assert "about" not in listed(admin_client, status__exact="completed")  # filtered: counted


def test_a_stale_estimate_is_not_believed_for_a_small_table(
    admin_client: Client, storage: DjangoStorage
) -> None:
    for _ in range(3):
        stored(storage)
    with connection.cursor() as cursor:  # as after a mass delete, before autovacuum
        cursor.execute(
            "UPDATE pg_class SET reltuples = 100000 WHERE oid = 'workflow_instances'::regclass"
        )
    page = listed(admin_client)
    assert "about" not in page
    assert "\n3 workflow instances" in page


def test_the_unfiltered_count_stops_at_its_limit(storage: DjangoStorage) -> None:
    for _ in range(20):
        stored(storage)
    with connection.cursor() as cursor:
        sql = COUNT_AND_ESTIMATE.format(table='"workflow_instances"')
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", [6, "workflow_instances"])
        (plan,) = cursor.fetchone()
    scans = [n for n in _nodes(plan[0]["Plan"]) if n.get("Relation Name") == "workflow_instances"]
    assert scans, "the count subquery is planned"
    assert all(node["Actual Rows"] <= 6 for node in scans)


def _nodes(plan: dict[str, Any]) -> Any:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_a_filtered_count_stops_at_its_limit(
    admin_client: Client, storage: DjangoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        stored(storage)
    monkeypatch.setattr(CheapCountPaginator, "COUNT_LIMIT", 2)
    page = listed(admin_client, status__exact="completed")
    assert "more than 2 workflow instances" in page
    monkeypatch.setattr(CheapCountPaginator, "COUNT_LIMIT", 3)
    assert "\n3 workflow instances" in listed(admin_client, status__exact="completed")


def test_facet_counts_are_never_computed(admin_client: Client, storage: DjangoStorage) -> None:
    stored(storage)
    with CaptureQueriesContext(connection) as captured:
        listed(admin_client, _facets="True")
    assert not any("FILTER (WHERE" in q["sql"] for q in captured.captured_queries)


def test_the_changelist_needs_the_view_permission(
    staff_client: Callable[..., Client], storage: DjangoStorage
) -> None:
    assert staff_client().get(CHANGELIST).status_code == 403


def test_view_permission_lists_without_operations(
    staff_client: Callable[..., Client], storage: DjangoStorage
) -> None:
    stored(storage)
    page = listed(staff_client("view_workflowinstance"))
    assert 'name="action"' not in page  # no delete action without the delete permission


def test_changelist_never_loads_the_state(admin_client: Client, storage: DjangoStorage) -> None:
    stored(storage)
    with CaptureQueriesContext(connection) as captured:
        listed(admin_client)
    rows_query = [q["sql"] for q in captured.captured_queries if "workflow_instances" in q["sql"]]
    assert rows_query
    assert not any('"workflow_instances"."state",' in sql for sql in rows_query)


def test_detail_page_is_read_only_and_escapes_the_context(
    admin_client: Client, storage: DjangoStorage
) -> None:
    instance = stored(storage, note="<script>alert(1)</script>")
    response = admin_client.get(detail_url(instance.id))
    page = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'name="_save"' not in page


def test_a_corrupt_row_renders_with_an_explanation(admin_client: Client) -> None:
    row_id = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workflow_instances (id, workflow, status, state) "
            "VALUES (%s, 'tests.flows.Gone', 'running', '{\"context\": {}}'::jsonb)",
            [row_id],
        )
    response = admin_client.get(detail_url(row_id))
    assert response.status_code == 200
    assert "This instance cannot be decoded" in response.content.decode()
    assert str(row_id) in listed(admin_client)


def test_instances_cannot_be_added_in_the_admin(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:hephaestus_django_workflowinstance_add"))
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("order_id=123", {"order_id": 123}),
        ("order_id=ORD-1", {"order_id": "ORD-1"}),
        ('order_id="123"', {"order_id": "123"}),
        ("customer.tier=gold vip=true", {"customer": {"tier": "gold"}, "vip": True}),
        ("a.b=1 a.c=2", {"a": {"b": 1, "c": 2}}),
        ('{"x": [1]}', {"x": [1]}),
        ("plain words", None),
        ("=5", None),
        ("key=", None),
        ("{not json", None),
        ("{}", None),
    ],
)
def test_search_terms(term: str, expected: dict[str, Any] | None) -> None:
    wanted = context_filter(term)
    assert wanted == (None if expected is None else {"context": {"initial": expected}})


def test_a_later_page_extracts_the_state_keys_of_its_own_rows_only(
    admin_client: Client, storage: DjangoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the first page, the rows query selects the page's ids first (``ORDER BY ... LIMIT
    ... OFFSET`` in a subquery that reads no JSON path) and extracts the steps' keys from
    ``state`` in the outer query, for the page's rows only: not for every row the OFFSET
    skips. The page shows the same rows, in the same order."""
    monkeypatch.setattr(admin.site._registry[WorkflowInstance], "list_per_page", 2)
    instances = [stored(storage, flows.TwoWaits) for _ in range(5)]
    newest_first = [str(instance.id) for instance in reversed(instances)]
    admin_client.get(CHANGELIST)  # the session and user, once
    with CaptureQueriesContext(connection) as captured:
        page = listed(admin_client, p="2")
    shown = re.findall(r'class="hx-id" title="([^"]+)"', page)
    assert shown == newest_first[2:4]
    assert "Signature" in page  # the steps' keys, extracted for the rows shown
    [rows_query] = [
        q["sql"] for q in captured.captured_queries if "OFFSET" in q["sql"] and "state" in q["sql"]
    ]
    outer, _, subquery = rows_query.partition(" IN (SELECT")
    assert "OFFSET 2" in subquery
    assert '"state"' not in subquery
    assert "->> 'current_step'" in outer
