"""Maps over child workflows more than one test module runs: one ``Parcel`` child per item.

Each item is ``{"id": ..., "fail": N}``: its child's step raises on the first ``N`` children of
that item (``"always"``: every one). Every child run is counted in ``RUNS`` (by the item's id),
and the children running at once are sampled in ``PEAK`` by the child's step, which counts the
``Parcel`` instances not ended in the storage.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from hephaestus_django import Done, Event, Map, Retry, Status, Step, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance

RUNS: Counter[str] = Counter()
PEAK = {"running": 0}
_lock = threading.Lock()


def reset() -> None:
    with _lock:
        RUNS.clear()
        PEAK["running"] = 0


class PackParcel(Step):
    """Packs one item; fails when its item says so. Samples how many parcels run now."""

    events = ("packed",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        from hephaestus_django.runtime import backends

        item = context.initial["item"]
        running = sum(
            1
            for found in backends.storage().query(workflow=Parcel, limit=1_000)
            if found.status not in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
        )
        with _lock:
            RUNS[str(item["id"])] += 1
            run = RUNS[str(item["id"])]
            PEAK["running"] = max(PEAK["running"], running)
        fail = item.get("fail", 0)
        if fail == "always" or (isinstance(fail, int) and run <= fail):
            raise RuntimeError(f"parcel {item['id']} cannot be packed (run {run})")
        return Event("packed", updates={"parcel": f"parcel-{item['id']}"})


class Parcel(Workflow):
    """The child: packs one item."""

    start = PackParcel
    transitions = {PackParcel: {"packed": Done}}


class ShipParcels(Map):
    """A child ``Parcel`` per item, two at a time."""

    each = Parcel
    in_flight = 2
    retry = Retry(max_attempts=2, backoff=timedelta(0), jitter=False)

    def over(self, context: Context) -> Any:
        return context.initial["items"]

    def child_context(self, item: Any, context: Context) -> Mapping[str, Any]:
        if item.get("unbuildable"):
            raise ValueError(f"item {item['id']} has no address")
        return {"item": item, "order": context.initial.get("order")}

    def child_key(self, item: Any, context: Context) -> str | None:
        order = context.initial.get("order")
        return None if order is None else f"parcel-{order}-{item['id']}"


class Count(Step):
    """After the map: how many parcels it shipped."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        return Event("ok", {"parcels": len(context.result(instance.workflow.graph.start))})


class Consignment(Workflow):
    """Ship every item of a consignment as a parcel of its own, then count them."""

    start = ShipParcels
    transitions = {ShipParcels: {"completed": Count}, Count: {"ok": Done}}


def items(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": index, **extra} for index in range(count)]


class AwaitPickup(WaitForEvent):
    """A child step that waits for ``resume()``."""

    events = ("picked_up",)


class PackSlowly(Step):
    events = ("packed",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        return Event("packed", updates={"parcel": f"parcel-{context.initial['item']}"})


class SlowParcel(Workflow):
    """A child that waits for its courier, so that its parent waits on it."""

    start = PackSlowly
    transitions = {PackSlowly: {"packed": AwaitPickup}, AwaitPickup: {"picked_up": Done}}


class ShipSlowParcels(Map):
    """A child ``SlowParcel`` per item, three at a time, no retry."""

    each = SlowParcel
    in_flight = 3

    def over(self, context: Context) -> Any:
        return context.initial["items"]


class SlowConsignment(Workflow):
    start = ShipSlowParcels
    transitions = {ShipSlowParcels: {"completed": Count}, Count: {"ok": Done}}


class ShipParcelsOneByOne(ShipParcels):
    """One child at a time: the lane is the whole list."""

    in_flight = 1


class LongConsignment(Workflow):
    start = ShipParcelsOneByOne
    transitions = {ShipParcelsOneByOne: {"completed": Count}, Count: {"ok": Done}}
