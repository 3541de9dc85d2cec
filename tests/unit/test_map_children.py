"""Definition checks of a map over child workflows: what ``each`` may be, and no cycles."""

from __future__ import annotations

from typing import Any

import pytest

from hephaestus_django import Done, Map, StepDefinitionError, Workflow, WorkflowDefinitionError
from hephaestus_django.core.instance import Context
from hephaestus_django.core.maps import is_child_map
from tests.support.map_children import Parcel, ShipParcels


def test_a_workflow_class_or_its_path_is_a_child_map() -> None:
    assert is_child_map(ShipParcels)
    assert ShipParcels.child_workflow() is Parcel

    class ByPath(Map):
        each = "tests.support.map_children.Parcel"

        def over(self, context: Context) -> Any:
            return []

    assert is_child_map(ByPath)
    assert ByPath.child_workflow() is Parcel


def test_each_must_be_an_item_or_a_workflow() -> None:
    with pytest.raises(StepDefinitionError, match="map-each"):

        class Bad(Map):
            each = 42  # type: ignore[assignment]

            def over(self, context: Context) -> Any:
                return []


def test_a_workflow_may_not_map_over_itself() -> None:
    class Loop(Map):
        each = f"{__name__}.test_a_workflow_may_not_map_over_itself.<locals>.Looping"

        def over(self, context: Context) -> Any:
            return []

    with pytest.raises(WorkflowDefinitionError) as raised:

        class Looping(Workflow):
            start = Loop
            transitions = {Loop: {"completed": Done}}

    assert raised.value.rule == "child-cycle"


def test_a_long_lane_on_local_runner_does_not_nest_a_run_per_child() -> None:
    """Each child's end starts the next one; ``LocalRunner`` runs them one after another."""
    from hephaestus_django import Status
    from hephaestus_django.runtime import InMemoryStorage, LocalRunner, configure
    from tests.support import map_children

    map_children.reset()
    configure(storages={"default": InMemoryStorage()}, runner=LocalRunner())
    try:
        instance_id = map_children.LongConsignment.start({"items": map_children.items(400)})
        instance = map_children.LongConsignment.get(instance_id)
        assert instance.status is Status.COMPLETED
        assert instance.context.result(map_children.Count) == {"parcels": 400}
        assert map_children.PEAK["running"] == 1
    finally:
        configure()
