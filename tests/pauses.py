"""Workflows for the tests of pausing an instance.

Each step records its runs in :data:`TRAIL`, per instance, in order; :class:`PauseMe` pauses its
own instance while it runs (an operator pausing an instance whose step is running).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from hephaestus_django import Done, Event, Step, Wait, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance

TRAIL: dict[UUID, list[str]] = defaultdict(list)
"""What the steps below did, per instance, in order."""


class Tracked(Step):
    """Records its run."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        TRAIL[instance.id].append(self.step_key)
        return Event("ok", updates={"ran": True})


class Prepare(Tracked):
    pass


class Gate(WaitForEvent):
    events = ("go",)


class Finish(Tracked):
    pass


class Gated(Workflow):
    """Prepare -> Gate (waits for "go") -> Finish -> Done."""

    start_step = Prepare
    transitions = {Prepare: {"ok": Gate}, Gate: {"go": Finish}, Finish: {"ok": Done}}


class Begin(Tracked):
    pass


class Nap(Wait):
    pass


class Wake(Tracked):
    pass


class Napping(Workflow):
    """Begin -> Nap (a one-minute timer) -> Wake -> Done."""

    start_step = Begin
    transitions = {
        Begin: {"ok": Nap.configure(duration=1, unit="minutes")},
        Nap: {"timeout": Wake},
        Wake: {"ok": Done},
    }


class PauseMe(Step):
    """Pauses its own instance while it runs, then completes."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        TRAIL[instance.id].append(self.step_key)
        SelfPausing.pause(instance.id, reason="held while its step ran")
        return Event("ok", updates={"paused_myself": True})


class Then(Tracked):
    pass


class SelfPausing(Workflow):
    """PauseMe (pauses the instance) -> Then -> Done."""

    start_step = PauseMe
    transitions = {PauseMe: {"ok": Then}, Then: {"ok": Done}}
