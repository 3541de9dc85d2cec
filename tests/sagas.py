"""Workflows whose steps can be compensated, for the tests of cancellation and compensation.

The steps record what they did (and undid) in :data:`EFFECTS`, per instance, so a test reads
which side effects happened, in which order, whichever process or runner ran them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID

from hephaestus_django import Done, Retry, Step, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance

EFFECTS: dict[UUID, list[str]] = defaultdict(list)
"""What the steps below did, per instance, in order: their work and their compensations."""
BROKEN_REFUNDS: set[UUID] = set()
"""Instances whose refund keeps failing until the test removes them."""


class Declined(Exception):
    """The card was declined: a business outcome."""


class RefundDown(Exception):
    """The payment provider cannot refund right now."""


class Reserve(Step):
    events = ("reserved",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        EFFECTS[instance.id].append("reserve")
        return "reserved"

    def compensate(self, instance: Instance, config: Mapping[str, Any], context: Context) -> None:
        EFFECTS[instance.id].append("release")


class Notify(Step):
    """Completes without a compensation: nothing to undo."""

    events = ("sent",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        EFFECTS[instance.id].append("notify")
        return "sent"


class Charge(Step):
    events = ("charged",)
    expected_errors = (Declined,)
    retry = Retry(max_attempts=2, backoff=timedelta(seconds=5), jitter=False)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        if context.initial.get("decline"):
            raise Declined("card declined")
        EFFECTS[instance.id].append("charge")
        return "charged"

    def compensate(self, instance: Instance, config: Mapping[str, Any], context: Context) -> None:
        if instance.id in BROKEN_REFUNDS:
            raise RefundDown("refunds are down")
        EFFECTS[instance.id].append("refund")


class AwaitShipment(WaitForEvent):
    events = ("shipped", "timeout")


class Order(Workflow):
    start_step = Reserve
    transitions = {
        Reserve: {"reserved": Notify},
        Notify: {"sent": Charge},
        Charge: {"charged": AwaitShipment.configure(timeout={"duration": 2, "unit": "days"})},
        AwaitShipment: {"shipped": Done, "timeout": Done},
    }


class UndoneOrder(Workflow):
    """The same order, compensated when it fails."""

    compensate_on_failure = True
    start_step = Reserve
    transitions = {
        Reserve: {"reserved": Notify},
        Notify: {"sent": Charge},
        Charge: {"charged": Done},
    }


class CancelsItself(Step):
    """Cancels its own instance while it runs, then returns: its result must not count."""

    events = ("done",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        EFFECTS[instance.id].append("ran")
        Workflow.cancel(instance.id, "changed my mind")
        return "done"


class SelfCancelling(Workflow):
    start_step = CancelsItself
    transitions = {CancelsItself: {"done": Done}}
