"""Bulk operations from the admin's changelist: the actions, the confirmation page with its
count, the progress page, permissions, and bad input (a message, never a server error)."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from hephaestus_django import Status
from hephaestus_django.models import BulkOperation
from hephaestus_django.storage import DjangoStorage
from tests.flows import Unguarded
from tests.support.admin import CHANGELIST, messages_of

pytestmark = pytest.mark.django_db

BULK = "admin:hephaestus_django_workflowinstance_bulk"


def act(client: Client, action: str, ids: list[object], query: str = "", **extra: str) -> str:
    """Run a changelist action; the confirmation page's URL it redirects to."""
    data = {"action": action, "_selected_action": [str(i) for i in ids], **extra}
    response = client.post(f"{CHANGELIST}{query}", data)
    assert response.status_code == 302, response.content[:500]
    return str(response["Location"])


def test_retry_all_matching_the_filters_previews_the_count_then_runs_in_the_background(
    admin_client: Client, storage: DjangoStorage
) -> None:
    ids = [Unguarded.start({"fails": 1}) for _ in range(3)]
    Unguarded.start({"fails": 0})  # completed: not selected
    query = f"?workflow={Unguarded.path()}&status__exact=failed"
    confirm = act(admin_client, "bulk_retry", ids[:1], query, select_across="1")
    page = admin_client.get(confirm)
    assert page.status_code == 200, (confirm, messages_of(page))
    assert "Retry <strong>3</strong> instance(s)" in page.content.decode()
    landed = admin_client.post(confirm)
    assert landed.status_code == 302
    progress = admin_client.get(landed["Location"])
    assert 'id="hx-bulk-remaining">3<' in progress.content.decode()
    call_command("hephaestus_worker", "--once", stdout=StringIO())
    call_command("hephaestus_worker", "--once", stdout=StringIO())
    progress = admin_client.get(landed["Location"]).content.decode()
    assert 'id="hx-bulk-done">3<' in progress
    assert 'id="hx-bulk-status">done<' in progress
    assert all(storage.get(i).status is Status.COMPLETED for i in ids)


def test_the_selected_rows_with_a_refusal_shown_on_the_progress_page(
    admin_client: Client, storage: DjangoStorage
) -> None:
    failed = Unguarded.start({"fails": 1})
    completed = Unguarded.start({"fails": 0})
    confirm = act(admin_client, "bulk_retry", [failed, completed])
    assert "Retry <strong>1</strong>" in admin_client.get(confirm).content.decode()  # failed only
    cancel = act(admin_client, "bulk_cancel", [failed, completed])
    assert "Cancel <strong>0</strong>" in admin_client.get(cancel).content.decode()
    landed = admin_client.post(confirm)
    call_command("hephaestus_worker", "--once", stdout=StringIO())
    call_command("hephaestus_worker", "--once", stdout=StringIO())
    page = admin_client.get(landed["Location"]).content.decode()
    assert 'id="hx-bulk-done">1<' in page
    assert storage.get(failed).status is Status.COMPLETED


def test_rewind_asks_for_the_step(admin_client: Client, storage: DjangoStorage) -> None:
    done = Unguarded.start({"fails": 0})
    query = f"?workflow={Unguarded.path()}"
    confirm = act(admin_client, "bulk_rewind", [done], query, select_across="1")
    page = admin_client.post(confirm, {"to": "nowhere"})
    assert page.status_code == 200
    assert "errorlist" in page.content.decode()
    assert not BulkOperation.objects.exists()


@pytest.mark.parametrize(
    "query",
    [
        "?all=1",  # no workflow
        "?all=1&workflow=no.such.Workflow",
        "?all=1&workflow=tests.flows.Unguarded&q=abc",  # a search cannot be carried
        "?all=1&workflow=tests.flows.Unguarded&status__exact=sleeping",
        "?all=1&workflow=tests.flows.Unguarded&version=two",
        "?all=1&workflow=tests.flows.Unguarded&inserted_at__gte=yesterday",
        "?ids=",
        "?ids=not-an-id,also-not",
    ],
)
def test_bad_input_is_a_message_never_a_server_error(
    admin_client: Client, storage: DjangoStorage, query: str
) -> None:
    response = admin_client.get(reverse(BULK, args=["retry"]) + query)
    if response.status_code == 302:
        assert messages_of(response)
    else:
        assert response.status_code == 200
        assert "<strong>0</strong>" in response.content.decode()
    assert not BulkOperation.objects.exists()


def test_each_operation_needs_its_permission(
    staff_client: Callable[..., Client], storage: DjangoStorage
) -> None:
    failed = Unguarded.start({"fails": 1})
    viewer = staff_client("view_workflowinstance")
    assert viewer.get(reverse(BULK, args=["retry"]) + f"?ids={failed}").status_code == 403
    actions = viewer.get(CHANGELIST).content.decode()
    assert "bulk_retry" not in actions
    operator = staff_client("view_workflowinstance", "retry_workflowinstance")
    page = operator.get(CHANGELIST).content.decode()
    assert "bulk_retry" in page
    assert "bulk_cancel" not in page
    assert operator.get(reverse(BULK, args=["cancel"]) + f"?ids={failed}").status_code == 403
    assert operator.get(reverse(BULK, args=["explode"]) + f"?ids={failed}").status_code == 403
