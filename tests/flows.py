"""Workflows shared by the tests.

Steps here are *scripted*: what a step does comes from
``context.initial["script"][step_key]`` — an event name, ``"wait"``, or
``"fail"`` — so one workflow covers many engine cases, each a row in a table.
Steps also record every execution in ``EXECUTIONS`` so tests can check that
nothing ran twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from hephaestus_django import Async, Done, Event, Route, Step, Wait, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance

EXECUTIONS: Counter[str] = Counter()
_lock = threading.Lock()


class StepFailed(RuntimeError):
    """Raised by a scripted step told to fail."""


class Scripted(Step):
    """Emits its first event unless the script says otherwise."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        with _lock:
            EXECUTIONS[f"{instance.id}:{self.step_key}"] += 1
        action = context.initial.get("script", {}).get(self.step_key, self.events[0])
        if action == "fail":
            raise StepFailed(f"{self.step_key} was told to fail")
        if action == "wait":
            return Async()
        return Event(action, updates={"ran": self.step_key})


def executions(instance_id: object) -> dict[str, int]:
    """How often each step of one instance executed."""
    prefix = f"{instance_id}:"
    return {key[len(prefix) :]: n for key, n in EXECUTIONS.items() if key.startswith(prefix)}


class Check(Scripted):
    events = ("valid", "invalid")


class Approve(Scripted):
    pass


class Reject(Scripted):
    pass


class Merge(Scripted):
    pass


class Split(Scripted):
    pass


class Pack(Scripted):
    pass


class Charge(Scripted):
    pass


class Notify(Scripted):
    pass


class Join(Scripted):
    pass


class IfElse(Workflow):
    """Exclusive branches that merge: the merge must run exactly once."""

    start = Check
    transitions = {
        Check: {"valid": Approve, "invalid": Reject},
        Approve: {"ok": Merge},
        Reject: {"ok": Merge},
        Merge: {"ok": Done},
    }


class FanOut(Workflow):
    """A three-way fan-out and its join."""

    start = Split
    transitions = {
        Split: {"ok": [Pack, Charge, Notify]},
        Pack: {"ok": Join},
        Charge: {"ok": Join},
        Notify: {"ok": Join},
        Join: {"ok": Done},
    }


class Signature(WaitForEvent):
    events = ("signed", "declined")


class Payment(WaitForEvent):
    events = ("paid",)


class Finish(Scripted):
    pass


class Declined(Done):
    pass


class TwoWaits(Workflow):
    """Two branches waiting at once, resumed one by one."""

    start = Split
    transitions = {
        Split: {"ok": [Signature, Payment]},
        Signature: {"signed": Join, "declined": Join},
        Payment: {"paid": Join},
        Join: {"ok": Finish},
        Finish: {"ok": Done},
    }


class Timed(Workflow):
    """A timer, then the end."""

    start = Approve
    transitions = {
        Approve: {"ok": Wait.configure(duration=5, unit="minutes")},
        Wait: {"timeout": Done},
    }


def choose_lane(context: Context) -> type[Step]:
    return Pack if context.initial.get("lane") == "pack" else Notify


class Routed(Workflow):
    """A dynamic route choosing one of two declared targets from the context."""

    start = Check
    transitions = {
        Check: {"valid": Route(choose_lane, [Pack, Notify]), "invalid": Declined},
        Pack: {"ok": Merge},
        Notify: {"ok": Merge},
        Merge: {"ok": Done},
    }


class Weigh(Scripted):
    pass


class Label(Scripted):
    pass


class Uneven(Workflow):
    """A fan-out whose branches differ in length: the join waits for the long one."""

    start = Split
    transitions = {
        Split: {"ok": [Pack, Charge]},
        Pack: {"ok": Weigh},
        Weigh: {"ok": Label},
        Label: {"ok": Join},
        Charge: {"ok": Join},
        Join: {"ok": Done},
    }
