"""The workflows run by the bench's worker processes.

- :class:`Sleep3`: three steps in a row, each sleeping ``initial["sleep"]`` seconds (I/O-bound
  work: the scaling figure);
- :class:`Noop3`: three steps in a row that do nothing (the overhead figure, against the bare
  procrastinate chain of :mod:`bench.queued.tasks`);
- :class:`Pickup1`: one step that marks when it starts (the pickup latency);
- :class:`Stall1`: one step that marks when it starts and, the first time, sleeps
  ``initial["sleep"]`` seconds: the worker running it is killed meanwhile (the recovery);
- :class:`ParentOfChild`: starts a child that waits for an event, then marks when its next
  step starts once the child ended (the latency from a child's end to its parent's next step).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from bench.queued.marks import mark, marked_before
from hephaestus_django import Child, Concurrency, Done, Event, Step, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance


class _Sleep(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        time.sleep(context.initial["sleep"])
        return Event("ok")


class SleepA(_Sleep):
    pass


class SleepB(_Sleep):
    pass


class SleepC(_Sleep):
    pass


class Sleep3(Workflow):
    start = SleepA
    transitions = {SleepA: {"ok": SleepB}, SleepB: {"ok": SleepC}, SleepC: {"ok": Done}}


class _Noop(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return Event("ok")


class NoopA(_Noop):
    pass


class NoopB(_Noop):
    pass


class NoopC(_Noop):
    pass


class Noop3(Workflow):
    start = NoopA
    transitions = {NoopA: {"ok": NoopB}, NoopB: {"ok": NoopC}, NoopC: {"ok": Done}}


class MarkStart(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        mark(str(instance.id))
        return Event("ok")


class Pickup1(Workflow):
    start = MarkStart
    transitions = {MarkStart: {"ok": Done}}


class LongStep(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        again = marked_before(str(instance.id))
        mark(str(instance.id))
        if not again:
            time.sleep(context.initial["sleep"])
        return Event("ok")


class Stall1(Workflow):
    start = LongStep
    transitions = {LongStep: {"ok": Done}}


class CourierWait(WaitForEvent):
    events = ("picked_up",)


class ChildWaits(Workflow):
    """A child that waits for ``picked_up`` from its first write (no job of its own)."""

    start = CourierWait
    transitions = {CourierWait: {"picked_up": Done}}


class StartChildWaiting(Child):
    workflow = ChildWaits

    def child_context(self, instance: Instance, context: Context) -> Mapping[str, Any]:
        return {}


class AfterChild(MarkStart):
    """The parent's next step once its child ended: marks when it starts."""


class ParentOfChild(Workflow):
    """Starts a ``ChildWaits`` and, once it ends, marks the start of its next step."""

    start = StartChildWaiting
    transitions = {
        StartChildWaiting: {"completed": AfterChild, "failed": Done, "cancelled": Done},
        AfterChild: {"ok": Done},
    }


class Limited4(Step):
    """Sleeps ``initial["sleep"]`` seconds, at most 4 at once across every worker: the
    throughput of a concurrency limit (:func:`bench.flow_control.throughput`)."""

    events = ("ok",)
    concurrency = Concurrency(4, name="bench-throughput")

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        time.sleep(context.initial["sleep"])
        return Event("ok")


class Limited1(Workflow):
    start = Limited4
    transitions = {Limited4: {"ok": Done}}


class Unlimited4(Step):
    """The same sleep with no limit: run by 4 workers, its ideal is the same as
    :class:`Limited4`'s with 8 (the baseline of :func:`bench.flow_control.throughput`)."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        time.sleep(context.initial["sleep"])
        return Event("ok")


class Unlimited1(Workflow):
    start = Unlimited4
    transitions = {Unlimited4: {"ok": Done}}
