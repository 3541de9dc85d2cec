"""The factories shipped for users' own tests."""

from __future__ import annotations

import pytest

from hephaestus_django import Status
from hephaestus_django.storage import DjangoStorage
from hephaestus_django.testing.factories import InstanceFactory, WorkflowInstanceFactory
from tests import flows


def test_instance_factory_builds_pending_or_started_instances() -> None:
    pending = InstanceFactory.build(workflow=flows.IfElse, context={"order_id": 1})
    assert pending.status is Status.PENDING
    assert pending.context.initial == {"order_id": 1}
    started = InstanceFactory(workflow=flows.IfElse, started=True)
    assert started.status is Status.RUNNING
    assert started.active_steps == {flows.Check}
    assert pending.id != started.id


def test_instance_factory_needs_a_workflow() -> None:
    with pytest.raises(TypeError, match="needs workflow="):
        InstanceFactory.build()


@pytest.mark.django_db
def test_row_factory_stores_through_the_storage() -> None:
    row = WorkflowInstanceFactory(workflow=flows.TwoWaits, context={"script": {}})
    assert row.status == "pending"
    assert row.to_instance() == DjangoStorage().get(row.id)


@pytest.mark.django_db
def test_row_factory_can_run_the_workflow() -> None:
    row = WorkflowInstanceFactory(workflow=flows.TwoWaits, context={"script": {}}, run=True)
    assert row.status == "waiting"
    assert set(row.to_instance().waiting_steps) == {flows.Signature, flows.Payment}
