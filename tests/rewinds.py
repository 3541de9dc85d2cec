"""Workflows for the tests of rewind, fork and the compensation of a failed instance.

Their steps read what to do from module state a test changes between runs, as a fix shipped
between the first run and the rewind would: :data:`BROKEN` names the steps that raise. Each
step records its runs and compensations in :data:`TRAIL`, per instance, in order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from hephaestus_django import Done, Event, Step, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance

TRAIL: dict[UUID, list[str]] = defaultdict(list)
"""What the steps below did (and undid), per instance, in order."""
BROKEN: set[str] = set()
"""The step keys whose ``execute`` raises (the bug not fixed yet)."""


class Broken(RuntimeError):
    """Raised by a step named in :data:`BROKEN`."""


class Tracked(Step):
    """Records its run; raises while broken; its result counts its runs in this instance."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        TRAIL[instance.id].append(self.step_key)
        if self.step_key in BROKEN:
            raise Broken(f"{self.step_key} is broken")
        runs = TRAIL[instance.id].count(self.step_key)
        return Event("ok", updates={"runs": runs, "factor": context.initial.get("factor", 1)})


class Undoable(Tracked):
    def compensate(self, instance: Instance, config: Mapping[str, Any], context: Context) -> None:
        TRAIL[instance.id].append(f"undo {self.step_key}")


class Fetch(Undoable):
    pass


class Price(Tracked):
    pass


class Bill(Undoable):
    pass


class Ship(WaitForEvent):
    events = ("shipped",)


class Pipeline(Workflow):
    """Fetch -> Price -> Bill -> Ship (waits) -> Done."""

    start_step = Fetch
    transitions = {
        Fetch: {"ok": Price},
        Price: {"ok": Bill},
        Bill: {"ok": Ship},
        Ship: {"shipped": Done},
    }


class Left(Tracked):
    pass


class Right(Tracked):
    pass


class Meet(Tracked):
    pass


class Branches(Workflow):
    """Fetch fans out to Left and Right, which meet at Meet."""

    start_step = Fetch
    transitions = {
        Fetch: {"ok": [Left, Right]},
        Left: {"ok": Meet},
        Right: {"ok": Meet},
        Meet: {"ok": Done},
    }


class Elsewhere(Tracked):
    """A step of another workflow."""


class Other(Workflow):
    start_step = Elsewhere
    transitions = {Elsewhere: {"ok": Done}}
