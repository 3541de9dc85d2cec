"""The async API from a real async view, through Django's AsyncClient, on PostgreSQL.

A view calling the synchronous API would get ``SynchronousOnlyOperation`` (HTTP 500, nothing
written); the ``a``-prefixed methods run it off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from hephaestus_django import LocalRunner, Status
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.asyncflows import Quotation

pytestmark = pytest.mark.django_db(
    transaction=True
)  # the view's thread has a connection of its own


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()


def post(data: dict[str, str]) -> dict[str, object]:
    response = async_to_sync(AsyncClient().post)("/quotation/", data)
    assert response.status_code == 200, response.content
    found: dict[str, object] = response.json()
    return found


def test_an_async_view_starts_and_resumes_an_instance_with_an_async_step() -> None:
    started = post({"key": "quote-7", "amount": "21"})
    assert (started["status"], started["price"]) == ("waiting", 42)
    again = post({"key": "quote-7", "amount": "21"})  # idempotent under its business key
    assert again["id"] == started["id"]

    accepted = post({"key": "quote-7", "accept": "1"})
    assert accepted["status"] == "completed"
    row = WorkflowInstance.objects.get(business_key="quote-7")
    assert str(row.id) == started["id"]
    assert Quotation.get(row.id).status is Status.COMPLETED


def test_the_synchronous_api_in_an_async_context_is_what_the_async_api_avoids() -> None:
    from django.core.exceptions import SynchronousOnlyOperation

    async def sync_call_in_the_loop() -> None:
        Quotation.start({"amount": 1})

    with pytest.raises(SynchronousOnlyOperation) as raised:
        async_to_sync(sync_call_in_the_loop)()
    assert "await Workflow.astart(...)" in str(raised.value)  # the hint names the way out
    assert WorkflowInstance.objects.count() == 0
