"""Workflows the dispatcher tests share with their worker processes.

Every step leaves a marker file ``<step_key>-<attempt>-<pid>`` in the folder named by
``context.initial["dir"]``, so a test counts how often a step *ran* (at least once) apart from
how often its result was *recorded* (the history: exactly once).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from hephaestus_django import Done, Event, Step, Wait, WaitForEvent, Workflow


def mark(instance: Any, context: Any, key: str) -> int:
    """Leave this run's marker; return which attempt of the step this is (1 for the first)."""
    folder = Path(context.initial["dir"])
    attempt = len(list(folder.glob(f"{key}-*"))) + 1
    (folder / f"{key}-{attempt}-{os.getpid()}").touch()
    return attempt


class Marking(Step):
    """Records its run and the worker's pid as its result."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        mark(instance, context, self.step_key)
        return Event("ok", updates={"pid": os.getpid()})


class Fetch(Marking):
    """First of three."""


class Verify(Marking):
    """Second of three."""


class Store(Marking):
    """Third of three."""


class QueuedChain(Workflow):
    """Three steps, one after another: three jobs."""

    start_step = Fetch
    transitions = {Fetch: {"ok": Verify}, Verify: {"ok": Store}, Store: {"ok": Done}}


class Open(Marking):
    """Opens the fan-out."""


class Left(Marking):
    """One branch."""


class Right(Marking):
    """The other branch."""


class Rejoin(Marking):
    """The join: runs once, after both branches."""


class QueuedFanOut(Workflow):
    """Two branches as two jobs, joined by the one that finishes last."""

    start_step = Open
    transitions = {
        Open: {"ok": [Left, Right]},
        Left: {"ok": Rejoin},
        Right: {"ok": Rejoin},
        Rejoin: {"ok": Done},
    }


class Doze(Wait):
    """A one-second timer."""


class BeforeDoze(Marking):
    """Starts the timed workflow."""


class QueuedTimer(Workflow):
    """A timer whose wake-up job fires it, with no sweep running."""

    start_step = BeforeDoze
    transitions = {
        BeforeDoze: {"ok": Doze.configure(duration=1, unit="seconds")},
        Doze: {"timeout": Done},
    }


class Grind(Step):
    """The first attempt blocks, so a test can kill its worker in the middle of it."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        if mark(instance, context, self.step_key) == 1:
            time.sleep(120)  # killed long before this ends
        return Event("ok", updates={"pid": os.getpid()})


class QueuedCrunching(Workflow):
    """A step whose first worker dies in the middle of it."""

    start_step = Grind
    transitions = {Grind: {"ok": Done}}


class Approval(WaitForEvent):
    """Waits for an approval."""

    events = ("approved",)


class AfterApproval(Marking):
    """Runs once the approval arrived."""


class QueuedApproval(Workflow):
    """An event delivered twice must have one effect."""

    start_step = Approval
    transitions = {Approval: {"approved": AfterApproval}, AfterApproval: {"ok": Done}}
