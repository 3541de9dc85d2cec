"""Workflows with rate limits, for the rate-limit tests (unit, contract).

``Called`` is a step limited to 3 executions a second (per tenant with ``PerTenantCalls``);
``Bursty`` is a workflow whose starts are limited to 2 a second. Each records the order its
executions ran in, so a test can check who was admitted, and when.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from hephaestus_django import Context, Done, Instance, RateLimit, Step, Workflow

WINDOW = timedelta(seconds=1)


class Called(Step):
    events = ("ok",)
    rate_limit = RateLimit(3, per=WINDOW)
    ran: list[str] = []

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        Called.ran.append(str(context.initial.get("name", "")))
        return "ok"


class CalledFlow(Workflow):
    start_step = Called
    transitions = {Called: {"ok": Done}}


def tenant(context: Context) -> str:
    return context.initial["tenant"]


class PerTenantCall(Step):
    events = ("ok",)
    rate_limit = RateLimit(1, per=timedelta(minutes=5), key=tenant)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        return "ok"


class PerTenantCalls(Workflow):
    start_step = PerTenantCall
    transitions = {PerTenantCall: {"ok": Done}}


class Begin(Step):
    events = ("ok",)
    ran: list[str] = []

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        Begin.ran.append(str(context.initial.get("name", "")))
        return "ok"


class Bursty(Workflow):
    """At most 2 starts a second."""

    start_step = Begin
    transitions = {Begin: {"ok": Done}}
    rate_limit = RateLimit(2, per=WINDOW)


class SelfEnding(Step):
    """A call limited to 1 a minute, during which ``during`` (set by a test) cancels or
    deletes its instance."""

    events = ("ok",)
    rate_limit = RateLimit(1, per=timedelta(minutes=1))
    ran: list[str] = []
    during: Callable[[Instance], None] | None = None

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        SelfEnding.ran.append(str(context.initial.get("name", "")))
        if SelfEnding.during is not None:
            SelfEnding.during(instance)
        return "ok"


class SelfEndingFlow(Workflow):
    start_step = SelfEnding
    transitions = {SelfEnding: {"ok": Done}}
