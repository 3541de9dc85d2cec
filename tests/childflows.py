"""Workflows that start child workflows, shared by the tests of child workflows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from hephaestus_django import Child, Done, Event, Retry, Step, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance


class Pack(Step):
    """Packs what the child was given; fails when told to."""

    events = ("packed",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        if context.initial.get("fail"):
            raise RuntimeError(f"cannot pack order {context.initial.get('order')}")
        return Event("packed", updates={"parcel": f"parcel-{context.initial['order']}"})


class AwaitCourier(WaitForEvent):
    """A child step that waits for ``resume()``."""

    events = ("picked_up",)


class Shipment(Workflow):
    """The child: packs an order, and waits for the courier when told to."""

    start = Pack
    transitions = {Pack: {"packed": Done}}


class SlowShipment(Workflow):
    """A child that waits for an event, so that its parent waits on it."""

    start = Pack
    transitions = {Pack: {"packed": AwaitCourier}, AwaitCourier: {"picked_up": Done}}


class Ship(Child):
    """Starts a ``Shipment`` with the order of the parent."""

    workflow = Shipment

    def child_context(self, instance: Instance, context: Context) -> Mapping[str, Any]:
        return {"order": context.initial["order"], "fail": context.initial.get("fail", False)}


class ShipSlowly(Child):
    """Starts a ``SlowShipment``, keyed by the order: a parent run again finds it."""

    workflow = "tests.childflows.SlowShipment"

    def child_context(self, instance: Instance, context: Context) -> Mapping[str, Any]:
        return {"order": context.initial["order"]}

    def child_key(self, instance: Instance, context: Context) -> str | None:
        return f"shipment-{context.initial['order']}"


class Bill(Step):
    """Runs after the child: records what the child's results were."""

    events = ("billed",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        return Event(
            "billed", updates={"shipped": context.result(Ship) or context.result(ShipSlowly)}
        )


class Shipped(Done):
    """The child completed."""


class NotShipped(Done):
    """The child failed or was cancelled."""


class Order(Workflow):
    """A parent: ships the order as a child workflow, then bills it."""

    start = Ship
    transitions = {
        Ship: {"completed": Bill, "failed": NotShipped, "cancelled": NotShipped},
        Bill: {"billed": Shipped},
    }


class SlowOrder(Workflow):
    """A parent whose child waits for an event."""

    start = ShipSlowly
    transitions = {
        ShipSlowly: {"completed": Bill, "failed": NotShipped, "cancelled": NotShipped},
        Bill: {"billed": Shipped},
    }


class ShipOrder(Child):
    """Starts an ``Order`` (itself a parent): grandchildren."""

    workflow = Order


class Batch(Workflow):
    """A grandparent: its child ``Order`` has a child ``Shipment``."""

    start = ShipOrder
    transitions = {ShipOrder: {"completed": Shipped, "failed": NotShipped, "cancelled": NotShipped}}


RUNS: list[str] = []
"""The parent ids ``ShipCarelessly`` ran for, one per attempt (tests clear it)."""


class ShipCarelessly(Child):
    """Builds a child context the storage refuses, as the parent's ``bad`` says: ``type`` (a
    value JSON has no form for), ``size`` (over the state bound), ``raises`` (it raises)."""

    workflow = Shipment
    retry = Retry(max_attempts=2, backoff=timedelta(0), jitter=False)

    def child_context(self, instance: Instance, context: Context) -> Mapping[str, Any]:
        RUNS.append(str(instance.id))
        bad = context.initial["bad"]
        if bad == "raises":
            raise LookupError("no warehouse holds the order")
        if bad == "size":
            return {"order": 1, "label": "x" * (2 * 1024 * 1024)}
        return {"order": 1, "packed_by": object()}


class CarelessOrder(Workflow):
    """A parent whose child step cannot build a storable child."""

    start = ShipCarelessly
    transitions = {
        ShipCarelessly: {"completed": Shipped, "failed": NotShipped, "cancelled": NotShipped}
    }


UNPACKED: list[str] = []
"""The orders whose parcel ``PackUndoably.compensate`` unpacked (tests clear it)."""


class PackUndoably(Pack):
    """Packs, and unpacks when the shipment is cancelled with compensation."""

    def compensate(self, instance: Instance, config: Mapping[str, Any], context: Context) -> None:
        UNPACKED.append(str(context.initial["order"]))


class UndoableShipment(Workflow):
    """A child that packs, then waits for the courier; a compensating cancel unpacks."""

    start = PackUndoably
    transitions = {PackUndoably: {"packed": AwaitCourier}, AwaitCourier: {"picked_up": Done}}


class ShipUndoably(Child):
    """Starts an ``UndoableShipment`` with the parent's order."""

    workflow = UndoableShipment

    def child_context(self, instance: Instance, context: Context) -> Mapping[str, Any]:
        return {"order": context.initial["order"]}


class UndoableOrder(Workflow):
    """A parent whose child compensates when cancelled with compensation."""

    start = ShipUndoably
    transitions = {
        ShipUndoably: {"completed": Shipped, "failed": NotShipped, "cancelled": NotShipped}
    }
