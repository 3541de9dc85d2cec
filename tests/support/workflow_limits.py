"""Workflows with a concurrency limit on their running instances, for the workflow-limit
tests: each opens, then waits for a ``close`` event (or fails on ``fail``), so a test decides
when each instance ends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hephaestus_django import (
    Concurrency,
    Context,
    Done,
    Instance,
    Step,
    WaitForEvent,
    Workflow,
)


class Open(Step):
    events = ("ok",)
    opened: list[str] = []

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        Open.opened.append(str(context.initial.get("name", "")))
        return "ok"


class Close(WaitForEvent):
    events = ("close", "fail")


class Crash(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        raise RuntimeError("asked to fail")


class Sessions(Workflow):
    """At most 2 running at once."""

    start_step = Open
    transitions = {Open: {"ok": Close}, Close: {"close": Done, "fail": Crash}, Crash: {"ok": Done}}
    concurrency = Concurrency(2)


def tenant(context: Context) -> str:
    return context.initial["tenant"]


class TenantSessions(Workflow):
    """At most 1 running at once per tenant."""

    start_step = Open
    transitions = {Open: {"ok": Close}, Close: {"close": Done, "fail": Crash}, Crash: {"ok": Done}}
    concurrency = Concurrency(1, key=tenant)
