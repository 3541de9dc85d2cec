"""Workflows with concurrency limits, for the flow-control tests (unit, contract, processes).

``Gate`` blocks each execution of a limited step until a test opens it, so a test can hold
slots for as long as it needs and look at who holds them.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hephaestus_django import Concurrency, Context, Done, Instance, Step, Workflow


class Gate:
    """Blocks ``Limited`` executions until opened; counts how many run at once."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.done = 0

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1
            self.done += 1


GATE = Gate()


class Limited(Step):
    events = ("ok",)
    concurrency = Concurrency(2)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        GATE.enter()
        try:
            GATE.opened.wait(timeout=30)
        finally:
            GATE.leave()
        return "ok"


class LimitedFlow(Workflow):
    start_step = Limited
    transitions = {Limited: {"ok": Done}}


def tenant(context: Context) -> str:
    return context.initial["tenant"]


class PerTenant(Step):
    events = ("ok",)
    concurrency = Concurrency(1, key=tenant)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        return "ok"


class PerTenantFlow(Workflow):
    start_step = PerTenant
    transitions = {PerTenant: {"ok": Done}}


class Ordered(Step):
    """Records the order its executions start in (one at a time: the limit is 1)."""

    events = ("ok",)
    concurrency = Concurrency(1, name="ordered")
    started: list[str] = []

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        Ordered.started.append(context.initial["name"])
        return "ok"


class OrderedFlow(Workflow):
    start_step = Ordered
    transitions = {Ordered: {"ok": Done}}


# --- what the process tests check the limits with (tests.dispatchers.workflows.held) ----------

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli"]
"""The tenants the process tests spread ``Throttled`` instances over."""


def most_at_once(intervals: Path) -> dict[tuple[str, str], int]:
    """For each limit and key, the most executions whose intervals overlapped."""
    edges: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for line in intervals.read_text().splitlines():
        limit, key, start, end = line.split()
        # An end before a start at the same instant: touching intervals do not overlap.
        edges[(limit, key)] += [(float(start), 1), (float(end), -1)]
    most = {}
    for limit_key, points in edges.items():
        running = peak = 0
        for _moment, change in sorted(points, key=lambda point: (point[0], point[1])):
            running += change
            peak = max(peak, running)
        most[limit_key] = peak
    return most


def sample(running: Path, seen: dict[str, int]) -> None:
    """Count the executions running now, per limit (and per tenant), keeping the most seen."""
    now: dict[str, int] = defaultdict(int)
    for path in running.iterdir():
        limit, key = path.name.split("-")[:2]
        now[limit] += 1
        now[f"{limit}:{key}"] += 1
    for name, count in now.items():
        seen[name] = max(seen.get(name, 0), count)


def most_in_a_window(stamps: Path, window: float) -> int:
    """The most moments of ``stamps`` (one float a line) in any window of ``window`` seconds
    (a sliding window: one starting at each moment)."""
    moments = sorted(float(line) for line in stamps.read_text().splitlines())
    most = end = 0
    for start, moment in enumerate(moments):
        end = max(end, start)
        while end < len(moments) and moments[end] < moment + window:
            end += 1
        most = max(most, end - start)
    return most
