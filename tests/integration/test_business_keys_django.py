"""Business keys on PostgreSQL: a duplicate start inside a caller's transaction, the columns
and indexes, the migration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from hephaestus_django import DuplicateInstanceError, LocalRunner, Status
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.support.workflows import Fulfilment

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local() -> Iterator[None]:
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    yield
    configure()


def test_a_duplicate_start_inside_a_transaction_leaves_the_transaction_usable() -> None:
    with transaction.atomic():
        first = Fulfilment.start({}, key="order-A-1001")
        assert Fulfilment.start({}, key="order-A-1001") == first
        with pytest.raises(DuplicateInstanceError):
            Fulfilment.start({}, key="order-A-1001", if_exists="raise")
        # no unique violation aborted the transaction: it goes on
        assert WorkflowInstance.objects.filter(business_key="order-A-1001").count() == 1
    row = WorkflowInstance.objects.get(id=first)
    assert row.business_key == "order-A-1001"
    assert row.key_claim == f"active|{Fulfilment.path()}|order-A-1001"


def test_the_claim_is_released_when_the_instance_completes() -> None:
    first = Fulfilment.start({}, key="order-5")
    Fulfilment.resume(key="order-5", event="paid")
    row = WorkflowInstance.objects.get(id=first)
    assert row.status == Status.COMPLETED
    assert row.business_key == "order-5"
    assert row.key_claim is None


def test_the_key_lookup_is_an_index_scan() -> None:
    Fulfilment.start({}, key="order-6")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN SELECT id FROM workflow_instances WHERE business_key = 'order-6'")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "idx_workflow_instances_key" in plan


@pytest.mark.django_db(transaction=True)
def test_the_business_key_migration_is_reversible() -> None:
    def indexes() -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'workflow_instances' "
                "AND indexname IN ('idx_workflow_instances_key', 'workflow_instances_key_claim')"
            )
            return {row[0] for row in cursor.fetchall()}

    assert indexes() == {"idx_workflow_instances_key", "workflow_instances_key_claim"}
    call_command("migrate", "hephaestus_django", "0007", verbosity=0)
    assert indexes() == set()
    call_command("migrate", "hephaestus_django", verbosity=0)
    assert indexes() == {"idx_workflow_instances_key", "workflow_instances_key_claim"}
