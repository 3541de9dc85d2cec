"""The admin: list, filters, search through the GIN index, read-only detail."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from hephaestus_django.search import context_filter
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.contract.test_storage_contract import stored

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:hephaestus_django_workflowinstance_changelist")


def detail_url(instance_id: object) -> str:
    return reverse("admin:hephaestus_django_workflowinstance_change", args=[instance_id])


@pytest.fixture
def storage() -> DjangoStorage:
    return DjangoStorage()


def listed(client: Client, **params: str) -> str:
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200
    return response.content.decode()


def test_changelist_shows_the_columns(admin_client: Client, storage: DjangoStorage) -> None:
    waiting = stored(storage, flows.TwoWaits)
    page = listed(admin_client)
    assert str(waiting.id) in page
    assert 'title="tests.flows.TwoWaits">TwoWaits</span>' in page
    assert "Signature" in page  # current step, read from one key of the state
    assert "waiting" in page


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


def test_changelist_queries_do_not_grow_with_rows(
    admin_client: Client, storage: DjangoStorage, django_assert_max_num_queries: Any
) -> None:
    for _ in range(30):
        stored(storage)
    with django_assert_max_num_queries(8):
        listed(admin_client)


def test_changelist_never_loads_the_state(admin_client: Client, storage: DjangoStorage) -> None:
    from django.test.utils import CaptureQueriesContext

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
