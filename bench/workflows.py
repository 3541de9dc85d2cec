"""The workflows measured, and the ~2 KB initial context every benchmark instance starts with.

- :class:`Linear3`: three steps in a row, then ``Done``.
- :class:`Fanout10`: ten steps; the third wave fans out to four branches that join again.

Each step does no work beyond returning its event with a small result, so what is measured is
the engine, the codec and the storage, not the steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hephaestus_django import Done, Event, Step, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance

TIERS = ("bronze", "silver", "gold")


def initial_context(order_id: int) -> dict[str, Any]:
    """A realistic order: customer, six items, an address; ~1.3 KB of JSON."""
    customer = order_id % 5000
    return {
        "order_id": order_id,
        "channel": "web",
        "currency": "EUR",
        "customer": {
            "id": f"C-{customer:05d}",
            "tier": TIERS[order_id % 3],
            "name": f"Customer number {customer}",
            "email": f"customer{customer}@example.com",
        },
        "items": [
            {
                "sku": f"SKU-{(order_id * 7 + k) % 9973:05d}",
                "title": f"Catalogue article {(order_id + k) % 997}",
                "quantity": 1 + k % 3,
                "unit_price": 4.5 + k,
                "warehouse": "north" if k % 2 else "south",
            }
            for k in range(6)
        ],
        "shipping": {
            "street": "1 Long Industrial Road",
            "city": "Springfield",
            "postcode": "12345",
            "country": "DE",
            "express": order_id % 2 == 0,
        },
        "notes": "Leave the parcel with the neighbour if nobody answers the door.",
    }


class BenchStep(Step):
    """Completes at once with a small result naming itself and the order."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return Event("ok", updates={"by": self.step_key, "order_id": context.initial["order_id"]})


class Validate(BenchStep):
    pass


class Reserve(BenchStep):
    pass


class Ship(BenchStep):
    pass


class Linear3(Workflow):
    """Three steps in a row: three waves plus ``Done``."""

    start = Validate
    transitions = {Validate: {"ok": Reserve}, Reserve: {"ok": Ship}, Ship: {"ok": Done}}


class Receive(BenchStep):
    pass


class Score(BenchStep):
    pass


class Pack(BenchStep):
    pass


class Charge(BenchStep):
    pass


class Notify(BenchStep):
    pass


class Audit(BenchStep):
    pass


class Join(BenchStep):
    pass


class Invoice(BenchStep):
    pass


class Dispatch(BenchStep):
    pass


class Close(BenchStep):
    pass


class Fanout10(Workflow):
    """Ten steps: two, a fan-out to four that join, three more; eight waves plus ``Done``."""

    start = Receive
    transitions = {
        Receive: {"ok": Score},
        Score: {"ok": [Pack, Charge, Notify, Audit]},
        Pack: {"ok": Join},
        Charge: {"ok": Join},
        Notify: {"ok": Join},
        Audit: {"ok": Join},
        Join: {"ok": Invoice},
        Invoice: {"ok": Dispatch},
        Dispatch: {"ok": Close},
        Close: {"ok": Done},
    }


class AwaitApproval(WaitForEvent):
    events = ("approved",)


class AwaitShipment(WaitForEvent):
    events = ("shipped",)


class Approval(Workflow):
    """The paths a web application uses most: a start that waits at once, and a resume that
    runs one step (with effects) to the next wait."""

    start = AwaitApproval
    transitions = {
        AwaitApproval: {"approved": Reserve},
        Reserve: {"ok": AwaitShipment},
        AwaitShipment: {"shipped": Done},
    }
