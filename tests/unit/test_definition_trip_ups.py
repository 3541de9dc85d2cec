"""Mistakes in a class body that used to pass silently, refused when the class is defined;
and the definition-level features ported from the original: ``metadata`` and ``version_for``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from hephaestus_django import (
    Done,
    Step,
    VersionedWorkflow,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core.errors import InvalidInstanceError, StepDefinitionError
from hephaestus_django.runtime import InMemoryStorage, configure


@pytest.fixture(autouse=True)
def memory() -> Iterator[InMemoryStorage]:
    storage = InMemoryStorage()
    configure(storages={"default": storage})
    yield storage
    configure()


class Ship(Step):
    events = ("shipped",)

    def execute(self, instance: Any, config: Mapping[str, Any], context: Any) -> str:
        return "shipped"


def test_a_step_without_execute_is_refused_when_defined() -> None:
    with pytest.raises(StepDefinitionError) as raised:

        class Charge(Step):
            events = ("charged",)

    assert raised.value.rule == "no-execute"
    assert "Charge defines no execute()" in str(raised.value)


def test_built_in_steps_their_subclasses_and_abstract_bases_need_no_execute_of_their_own() -> None:
    class Signed(WaitForEvent):
        events = ("signed",)

    class Pause(Wait):
        pass

    class Ending(Done):
        pass

    class Base(Step):
        abstract = True
        events = ("ok",)

    assert Signed.execute is WaitForEvent.execute
    assert {Pause, Ending, Base}


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("transition", "transitions"),
        ("start_steps", "start_step"),
        ("compensate_on_fail", "compensate_on_failure"),
        ("default_retries", "default_retry"),
    ],
)
def test_a_misspelled_declaration_is_refused_with_did_you_mean(typo: str, meant: str) -> None:
    body: dict[str, Any] = {"start_step": Ship, "transitions": {Ship: {"shipped": Done}}}
    with pytest.raises(WorkflowDefinitionError) as raised:
        type("Typo", (Workflow,), {**body, typo: body.get(meant, True)})
    assert raised.value.rule == "misspelled-attribute"
    assert f"unknown class attribute {typo!r}: did you mean {meant!r}?" in str(raised.value)


def test_attributes_of_ones_own_are_left_alone() -> None:
    class Helpers(Workflow):
        start_step = Ship
        transitions = {Ship: {"shipped": Done}}
        owner_email = "billing@example.com"

        @classmethod
        def describe(cls) -> str:
            return cls.owner_email

    assert Helpers.describe() == "billing@example.com"


def test_metadata_is_a_dict_of_json_values_checked_when_defined() -> None:
    class Documented(Workflow):
        start_step = Ship
        transitions = {Ship: {"shipped": Done}}
        metadata = {"owner": "billing", "sla_hours": 4, "links": ["https://runbooks/ship"]}

    assert Documented.metadata["owner"] == "billing"
    for bad, says in [
        (42, "metadata must be a dict"),
        ({"when": object()}, "metadata['when'] is <object"),
        ({1: "x"}, "has the key 1; keys must be strings"),
        ({"x": [float("nan")]}, "metadata['x'][0] is nan"),
    ]:
        with pytest.raises(WorkflowDefinitionError) as raised:
            type(
                "Bad",
                (Workflow,),
                {"start_step": Ship, "transitions": {Ship: {"shipped": Done}}, "metadata": bad},
            )
        assert raised.value.rule == "malformed-metadata"
        assert says in str(raised.value)


class ShipV1(Workflow):
    version = 1
    start_step = Ship
    transitions = {Ship: {"shipped": Done}}


class ShipV2(Workflow):
    version = 2
    start_step = Ship
    transitions = {Ship: {"shipped": Done}}


class Shipping(VersionedWorkflow):
    versions = (ShipV1, ShipV2)
    metadata = {"owner": "logistics"}

    @classmethod
    def version_for(cls, context: Mapping[str, Any], **options: Any) -> int | None:
        if options.get("key", "") and options["key"].startswith("beta-"):
            return 2
        return context.get("pinned")


def test_version_for_chooses_the_version_unless_start_names_one(memory: InMemoryStorage) -> None:
    assert Shipping.get(Shipping.start({})).workflow_version == 2  # None: current
    assert Shipping.get(Shipping.start({"pinned": 1})).workflow_version == 1
    assert Shipping.get(Shipping.start({}, key="beta-7")).workflow_version == 2
    assert Shipping.get(Shipping.start({"pinned": 1}, version=2)).workflow_version == 2
    assert Shipping.metadata == {"owner": "logistics"}


def test_version_for_choosing_an_unknown_version_names_the_hook(memory: InMemoryStorage) -> None:
    with pytest.raises(InvalidInstanceError) as raised:
        Shipping.start({"pinned": 7})
    assert "Shipping.version_for() chose version 7" in str(raised.value)
    assert memory.query() == []


class OrderWorkflow(Workflow):
    start_step = Ship
    transitions = {Ship: {"shipped": Done}}


def test_messages_take_an_before_a_vowel_and_a_before_a_consonant() -> None:
    with pytest.raises(InvalidInstanceError, match="the business key of an OrderWorkflow must"):
        OrderWorkflow.start({}, key=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInstanceError, match="the context an OrderWorkflow starts with"):
        OrderWorkflow.start([1])  # type: ignore[arg-type]
    with pytest.raises(InvalidInstanceError, match="the business key of a ShipV1 must"):
        ShipV1.start({}, key=5)  # type: ignore[arg-type]
