"""Workflows of the dispatcher tests, shared with the worker processes (autodiscovered there).

Each step records the process that ran it, so a test can tell that work was spread over
workers; the history says how often each step's result was recorded. Started with a folder as
``{"dir": ...}``, each step also leaves a marker file ``<step_key>-<attempt>-<pid>`` there, so a
test counts how often a step *ran* (at least once) apart from how often its result was
*recorded* (exactly once).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from hephaestus_django import (
    Child,
    Concurrency,
    Done,
    Event,
    Map,
    MapItem,
    RateLimit,
    Retry,
    Step,
    Wait,
    WaitForEvent,
    Workflow,
)


def mark(context: Any, key: str) -> int:
    """Leave this run's marker in ``context.initial["dir"]`` (when the instance was started with
    one); return which attempt of the step this is (1 for the first)."""
    if "dir" not in context.initial:
        return 1
    folder = Path(context.initial["dir"])
    attempt = len(list(folder.glob(f"{key}-*"))) + 1
    (folder / f"{key}-{attempt}-{os.getpid()}").touch()
    return attempt


class _Recorded(Step):
    """Emits ``ok`` with the pid of the process that ran it as its result (and marks its run)."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        mark(context, self.step_key)
        return Event("ok", {"pid": os.getpid()})


class First(_Recorded):
    """Step one of three."""


class Second(_Recorded):
    """Step two of three."""


class Third(_Recorded):
    """Step three of three."""


class Chain(Workflow):
    """Three steps in a row: three jobs, each enqueued by the one before."""

    start = First
    transitions = {First: {"ok": Second}, Second: {"ok": Third}, Third: {"ok": Done}}


class Fork(_Recorded):
    """Opens a fan-out."""


class Left(_Recorded):
    """A branch."""


class Right(_Recorded):
    """Another branch."""


class Join(_Recorded):
    """Runs once, after every branch."""


class Diamond(Workflow):
    """A fan-out of two branches and their join."""

    start = Fork
    transitions = {
        Fork: {"ok": [Left, Right]},
        Left: {"ok": Join},
        Right: {"ok": Join},
        Join: {"ok": Done},
    }


class Nap(Wait):
    """A one-second timer."""


class Napping(Workflow):
    """A timer between two steps: its wake-up job fires it."""

    start = First
    transitions = {First: {"ok": Nap.configure(duration=1, unit="seconds")}, Nap: {"timeout": Done}}


class Doze(Wait):
    """A half-hour timer."""


class Dozing(Workflow):
    """A timer no test waits for: its wake-ups come early."""

    start = First
    transitions = {
        First: {"ok": Doze.configure(duration=30, unit="minutes")},
        Doze: {"timeout": Done},
    }


class Snooze(Wait):
    """A one-second timer beside two branches."""


class Busy(Workflow):
    """The load: three branches, one of them a timer, joined."""

    start = Fork
    transitions = {
        Fork: {"ok": [Left, Right, Snooze.configure(duration=1, unit="seconds")]},
        Left: {"ok": Join},
        Right: {"ok": Join},
        Snooze: {"timeout": Join},
        Join: {"ok": Done},
    }


class Gate(WaitForEvent):
    """Waits for ``go``."""

    events = ("go",)


class Gated(Workflow):
    """Waits for an event, then one step."""

    start = First
    transitions = {First: {"ok": Gate}, Gate: {"go": Second}, Second: {"ok": Done}}


class Crunch(Step):
    """Marks each attempt in ``context.initial["dir"]``; the first blocks, to be killed."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        if mark(context, self.step_key) == 1:
            time.sleep(600)  # killed long before this ends
        return Event("ok", {"pid": os.getpid()})


class Crunching(Workflow):
    """A step whose first worker dies under it."""

    start = First
    transitions = {First: {"ok": Crunch}, Crunch: {"ok": Done}}


class CrunchAsChild(Child):
    """Starts a ``Crunching`` child in the parent's folder: its first worker dies under it."""

    workflow = Crunching

    def child_context(self, instance: Any, context: Any) -> Any:
        return {"dir": context.initial["dir"]}


class Joined(_Recorded):
    """The parent's step after its child ended: its run must be the only one."""


class CrunchingParent(Workflow):
    """A parent whose child's worker dies mid-step; it joins once the child recovers."""

    start = CrunchAsChild
    transitions = {
        CrunchAsChild: {"completed": Joined, "failed": Done, "cancelled": Done},
        Joined: {"ok": Done},
    }


class Hold(Step):
    """Marks its run, then holds until the file ``context.initial["release"]`` exists: the test
    deletes (or cancels and prunes) the instance meanwhile."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        mark(context, self.step_key)
        release = Path(context.initial["release"])
        while not release.exists():
            time.sleep(0.05)
        return Event("ok", {"pid": os.getpid()})


class Ship(_Recorded):
    """Must never run for an instance deleted while ``Hold`` ran."""


class Held(Workflow):
    """A step that is still running when its instance is deleted."""

    start = First
    transitions = {First: {"ok": Hold}, Hold: {"ok": Ship}, Ship: {"ok": Done}}


class Linger(Step):
    """Runs for a second (and marks its run): long enough for a second job of it to start
    beside it, if one is allowed to."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        mark(context, self.step_key)
        time.sleep(1)
        return Event("ok", {"pid": os.getpid()})


class Lingering(Workflow):
    """Two steps of a second each: what the outage test queues and then runs."""

    start = Linger
    transitions = {Linger: {"ok": Second}, Second: {"ok": Done}}


class MarkLine(MapItem):
    """One item of a map: marks its run as ``item<index>-<attempt>-<pid>`` (``item`` is
    ``{"index": i, "sleep": s}``), sleeps ``s`` seconds, and returns its index and pid."""

    def execute(self, item: Any, context: Any) -> Any:
        mark(context, f"item{item['index']}")
        time.sleep(item.get("sleep", 0))
        return {"index": item["index"], "pid": os.getpid()}


class MarkLines(Map):
    each = MarkLine
    in_flight = 4

    def over(self, context: Any) -> Any:
        return context.initial["lines"]


class Mapped(Workflow):
    """A map, run by a worker as the map step's job, then a step after its join."""

    start = MarkLines
    transitions = {MarkLines: {"completed": Third}, Third: {"ok": Done}}


class TwinLine(MapItem):
    """An item that ends with the other items of its map: it marks its run, then waits until
    every item of the list has marked its own (``item`` is ``{"index": i, "of": n}``), so the
    last items of the map end at the same moment, in different jobs."""

    def execute(self, item: Any, context: Any) -> Any:
        mark(context, f"twin{item['index']}")
        folder = Path(context.initial["dir"])
        deadline = time.monotonic() + 30  # a bound on a hang, should no other job run
        while len(list(folder.glob("twin*"))) < item["of"] and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"index": item["index"], "pid": os.getpid()}


class TwinLines(Map):
    each = TwinLine
    in_flight = 4

    def over(self, context: Any) -> Any:
        return context.initial["lines"]


class Twinned(Workflow):
    """A map whose last items end together: the join must still fire once."""

    start = TwinLines
    transitions = {TwinLines: {"completed": Third}, Third: {"ok": Done}}


class CountLine(MapItem):
    """An item that returns its index and pid, and does nothing else."""

    def execute(self, item: Any, context: Any) -> Any:
        return {"index": item, "pid": os.getpid()}


class CountLines(Map):
    each = CountLine
    in_flight = 8

    def over(self, context: Any) -> Any:
        return list(range(context.initial["count"]))


class Counted(Workflow):
    """A map of ``count`` items (a thousand, say) as item jobs, ``in_flight`` at a time."""

    start = CountLines
    transitions = {CountLines: {"completed": Third}, Third: {"ok": Done}}


class FlakyLine(MapItem):
    """An item that fails its first attempt when ``item["flaky"]`` (marked ``flaky<index>``)."""

    def execute(self, item: Any, context: Any) -> Any:
        attempt = mark(context, f"flaky{item['index']}")
        if item.get("flaky") and attempt == 1:
            raise RuntimeError(f"item {item['index']} fails its first attempt")
        return {"index": item["index"], "pid": os.getpid()}


class FlakyLines(Map):
    """Items whose retry waits four seconds: on a durable timer, not a sleep."""

    each = FlakyLine
    in_flight = 2
    retry = Retry(max_attempts=3, backoff=timedelta(seconds=4), jitter=False)

    def over(self, context: Any) -> Any:
        return context.initial["lines"]


class Flaky(Workflow):
    start = FlakyLines
    transitions = {FlakyLines: {"completed": Third}, Third: {"ok": Done}}


# --- flow control: concurrency limits under real workers (test_flow_control_workers.py) ------


def held(context: Any, limit: str, key: str, seconds: float = 0.05) -> None:
    """Run for ``seconds`` as one execution of ``limit`` under ``key``, leaving the trace a
    test checks the limit with: a file in ``<dir>/running`` while it runs (sampled by the test
    throughout), and a line ``limit key start end`` (``time.monotonic()``, one clock for every
    process of the machine) appended to ``<dir>/intervals`` once it ends."""
    folder = Path(context.initial["dir"])
    running = folder / "running" / f"{limit}-{key}-{os.getpid()}-{time.monotonic_ns()}"
    start = time.monotonic()
    running.touch()
    time.sleep(seconds)
    running.unlink()
    end = time.monotonic()
    with (folder / "intervals").open("a") as intervals:
        intervals.write(f"{limit} {key} {start!r} {end!r}\n")


def _tenant(context: Any) -> str:
    return str(context.initial["tenant"])


class Fan(_Recorded):
    """Opens the fan-out to the two limited branches."""


class Gateway(Step):
    """At most 3 at once, across every worker (a partner API's limit)."""

    events = ("ok",)
    concurrency = Concurrency(3, name="proc-gateway")

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        held(context, "gateway", "-")
        return Event("ok", {"pid": os.getpid()})


class TenantSync(Step):
    """At most 1 at once per tenant."""

    events = ("ok",)
    concurrency = Concurrency(1, key=_tenant)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        held(context, "tenant", _tenant(context))
        return Event("ok", {"pid": os.getpid()})


class Merge(_Recorded):
    """Runs once both limited branches have."""


class Throttled(Workflow):
    """A fan-out to a step limited to 3 and a step limited to 1 per tenant."""

    start = Fan
    transitions = {
        Fan: {"ok": [Gateway, TenantSync]},
        Gateway: {"ok": Merge},
        TenantSync: {"ok": Merge},
        Merge: {"ok": Done},
    }


class Clog(Step):
    """One at a time. With ``{"stuck": true}``, its first run never ends: the test kills its
    worker (``kill -9``) while it holds the slot."""

    events = ("ok",)
    concurrency = Concurrency(1, name="proc-clog")

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        attempt = mark(context, f"clog-{context.initial['name']}")
        if context.initial.get("stuck") and attempt == 1:
            while True:
                time.sleep(0.05)
        return Event("ok", {"pid": os.getpid()})


class Clogged(Workflow):
    start = Clog
    transitions = {Clog: {"ok": Done}}


# --- flow control: rate limits under real processes (test_rate_limit_processes.py) -----------


def stamp(context: Any, what: str) -> None:
    """Append ``time.monotonic()`` (one clock for every process of the machine) to the file
    ``<dir>/<what>``: when this execution started."""
    with (Path(context.initial["dir"]) / what).open("a") as stamps:
        stamps.write(f"{time.monotonic()!r}\n")


class Opened(Step):
    """The first step of ``RateLimited``: its first execution is the instance's start."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        stamp(context, "starts")
        return "ok"


class Called(Step):
    """A partner API's call: at most 10 a second, across every process."""

    events = ("ok",)
    rate_limit = RateLimit(10, per=timedelta(seconds=1), name="proc-calls")

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        stamp(context, "calls")
        return "ok"


class RateLimited(Workflow):
    """At most 10 starts a second, then a call limited to 10 a second."""

    start = Opened
    transitions = {Opened: {"ok": Called}, Called: {"ok": Done}}
    rate_limit = RateLimit(10, per=timedelta(seconds=1), name="proc-starts")


class Relay(Step):
    """Marks its run, then holds until the file ``release<run>`` exists in
    ``context.initial["dir"]`` (the first run ``release1``, ...); its result says which run it
    was: a test releases the runs in the order it wants their results to come back (each run
    leaves ``returned<run>`` as it returns)."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        run = mark(context, self.step_key)
        release = Path(context.initial["dir"]) / f"release{run}"
        while not release.exists():
            time.sleep(0.05)
        (release.parent / f"returned{run}").touch()
        return Event("ok", {"pid": os.getpid(), "run": run})


class Relayed(Workflow):
    """A step still running when the test rewinds the instance to it."""

    start = First
    transitions = {First: {"ok": Relay}, Relay: {"ok": Ship}, Ship: {"ok": Done}}


class Plug(Step):
    """One at a time. Marks its run (``plug-<name>-<run>-<pid>``), then holds its slot until
    the file ``unplug-<name>`` exists in ``context.initial["dir"]``, and leaves
    ``unplugged-<name>`` as it returns: a test cancels an instance while its step holds the
    slot, and chooses when that step's late result comes back."""

    events = ("ok",)
    concurrency = Concurrency(1, name="proc-plug")

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        name = context.initial["name"]
        mark(context, f"plug-{name}")
        folder = Path(context.initial["dir"])
        while not (folder / f"unplug-{name}").exists():
            time.sleep(0.05)
        (folder / f"unplugged-{name}").touch()
        return Event("ok", {"pid": os.getpid()})


class Plugged(Workflow):
    start = Plug
    transitions = {Plug: {"ok": Done}}


class Turn(Step):
    """One at a time: appends the instance's name to ``<dir>/turns`` as it is admitted and
    runs (so the file is the order of admission). ``{"hold": true}`` holds the slot until
    the file ``unplug-<name>`` exists, while a test lines the others up behind it."""

    events = ("ok",)
    concurrency = Concurrency(1, name="proc-turn")

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        folder = Path(context.initial["dir"])
        name = context.initial["name"]
        with (folder / "turns").open("a") as turns:
            turns.write(f"{name}\n")
        while context.initial.get("hold") and not (folder / f"unplug-{name}").exists():
            time.sleep(0.05)
        return Event("ok", {"pid": os.getpid()})


class Turns(Workflow):
    start = Turn
    transitions = {Turn: {"ok": Done}}


class HealedOnRetry(Step):
    """Fails until it is retried: a run whose instance has a failed attempt in its history
    (what ``retry`` records) succeeds. So an instance of :class:`BulkRetried` fails when it
    starts and completes after one retry, in any process."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        if not any(entry.error is not None for entry in instance.execution_history):
            raise RuntimeError("broken until the fix is deployed and the instance retried")
        return Event("ok")


class BulkRetried(Workflow):
    """``HealedOnRetry``, then ``Done``: the bulk retry's fault test."""

    start_step = HealedOnRetry
    transitions = {HealedOnRetry: {"ok": Done}}


class PackBox(Step):
    """The step of a map's child: marks its run as ``box<item>-<attempt>-<pid>``, sleeps a
    little (so that children overlap), and returns its item and pid."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Any:
        item = context.initial["item"]
        mark(context, f"box{item}")
        time.sleep(0.05)
        return Event("ok", {"item": item, "pid": os.getpid()})


class Box(Workflow):
    """The child of :class:`BoxedMap`, one per item."""

    start = PackBox
    transitions = {PackBox: {"ok": Done}}


class PackBoxes(Map):
    each = Box
    in_flight = 3

    def over(self, context: Any) -> Any:
        return list(range(context.initial["boxes"]))

    def child_context(self, item: Any, context: Any) -> Any:
        return {"item": item, "dir": context.initial["dir"]}


class BoxedMap(Workflow):
    """A map over child workflows, then a step after its join."""

    start = PackBoxes
    transitions = {PackBoxes: {"completed": Third}, Third: {"ok": Done}}
