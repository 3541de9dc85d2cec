"""Workflows the process tests share with their child processes."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from hephaestus_django import (
    Done,
    Retry,
    Step,
    Upgrade,
    VersionedWorkflow,
    Wait,
    WaitForEvent,
    Workflow,
)

BRANCHES = 20


class Split(Step):
    """Opens the fan-out."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        return "ok"


class Gather(Step):
    """Joins every branch."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        return "ok"


GATES = [type(f"Gate{n}", (WaitForEvent,), {"events": ("go",)}) for n in range(BRANCHES)]
for _gate in GATES:
    globals()[_gate.__name__] = _gate
    _gate.__module__ = __name__


class ManyGates(Workflow):
    """One instance waits on twenty branches at once; each is resumed by some process."""

    start = Split
    transitions = {
        Split: {"ok": GATES},
        **{gate: {"go": Gather} for gate in GATES},
        Gather: {"ok": Done},
    }


class Crunch(Step):
    """A slow step: the first attempt blocks (so a test can kill its process mid-step)."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        folder = Path(context.initial["dir"])
        attempt = len(list(folder.glob("attempt-*"))) + 1
        (folder / f"attempt-{attempt}-{os.getpid()}").touch()
        if attempt == 1:
            time.sleep(120)  # killed long before this ends
        return "ok"


class Crunching(Workflow):
    """A step whose first runner dies with it."""

    start = Split
    transitions = {Split: {"ok": Crunch}, Crunch: {"ok": Done}}


class Nap(Wait):
    """A one-second timer."""


class Napping(Workflow):
    """A timer that must fire exactly once, whoever is running when it is due."""

    start = Split
    transitions = {Split: {"ok": Nap.configure(duration=1, unit="seconds")}, Nap: {"timeout": Done}}


class Hold(WaitForEvent):
    """Waits for ``go``, delivered by the load of the fault tests."""

    events = ("go",)


class Gated(Workflow):
    """Waits for ``go``, then ends: what a cancel and a resume race on."""

    start = Hold
    transitions = {Hold: {"go": Done}}


class Gate(WaitForEvent):
    """Version 2's name for ``Hold``."""

    events = ("go",)


class Finish(Step):
    """What version 2 adds after the gate."""

    events = ("finished",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        return "finished"


class GatedV1(Workflow):
    """Waits for ``go``, then ends: what an upgrade and a resume race on."""

    start = Hold
    transitions = {Hold: {"go": Done}}


class GatedV2(Workflow):
    version = 2
    upgrade_from = Upgrade(GatedV1, steps={Hold: Gate})
    start_step = Gate
    transitions = {Gate: {"go": Finish}, Finish: {"finished": Done}}


class VersionedGate(VersionedWorkflow):
    versions = (GatedV1, GatedV2)


class Refusing(Step):
    """Fails while its instance's context says so, per file: a retry can then succeed."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        if not (Path(context.initial["dir"]) / "fixed").exists():
            raise ConnectionError("the service is down")
        return "ok"


class Repairable(Workflow):
    """Fails until a file exists, then a retry completes it: what a cancel and a retry race on."""

    start = Refusing
    transitions = {Refusing: {"ok": Done}}


class Tick(Wait):
    """A one-second timer, due while the database may be down."""


class Restartable(Workflow):
    """An event and a timer side by side, joined: the load of the fault tests."""

    start = Split
    transitions = {
        Split: {"ok": [Hold, Tick.configure(duration=1, unit="seconds")]},
        Hold: {"go": Gather},
        Tick: {"timeout": Gather},
        Gather: {"ok": Done},
    }


class Crawl(Step):
    """A step longer than the lease: it records each run, then sleeps."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        (Path(context.initial["dir"]) / f"run-{uuid.uuid4().hex}").touch()
        time.sleep(context.initial["seconds"])
        return "ok"


class Crawling(Workflow):
    """One long step, whose lease the heartbeat keeps alive."""

    start = Crawl
    transitions = {Crawl: {"ok": Done}}


class CallFlakyService(Step):
    """Fails its first two attempts (counted in files: any process may make one), then succeeds."""

    events = ("ok",)
    retry = Retry(max_attempts=3, backoff=timedelta(seconds=2), factor=1, jitter=False)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        folder = Path(context.initial["dir"])
        attempt = len(list(folder.glob("attempt-*"))) + 1
        (folder / f"attempt-{attempt}-{os.getpid()}").touch()
        if attempt <= 2:
            raise ConnectionError(f"the service is down (attempt {attempt})")
        return "ok"


class Stubborn(Workflow):
    """A step that succeeds on its third attempt, two seconds after each failure."""

    start = Split
    transitions = {Split: {"ok": CallFlakyService}, CallFlakyService: {"ok": Done}}


class Report(Step):
    """What a scheduled workflow does: records the tick it was started for."""

    events = ("done",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        from hephaestus_django import Event

        return Event(
            "done", {"tick": instance.runtime_metadata["schedule"]["tick"], "pid": os.getpid()}
        )


class Scheduled(Workflow):
    """Started by the schedules of the schedule tests."""

    start = Report
    transitions = {Report: {"done": Done}}


class Sync(Step):
    """What a debounced workflow does: records the context it started with."""

    events = ("done",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        from hephaestus_django import Event

        return Event("done", {"context": dict(context.initial), "pid": os.getpid()})


class Debounced(Workflow):
    """Started by the debounce tests."""

    start = Sync
    transitions = {Sync: {"done": Done}}
