"""A workflow's graph as things to draw: steps, the events between them, an instance's progress.

The SVG, Mermaid and DOT renderers all draw this one model, so they show the same graph. It is
built from the validated :class:`~hephaestus_django.core.graph.WorkflowGraph` only, never from a
stored row, and it is pure Python: the management command and tests use it without a database.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hephaestus_django.core.engine import COMPENSATED
from hephaestus_django.core.graph import StepClass, WorkflowGraph
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.status import Status
from hephaestus_django.core.steps import Wait, WaitForEvent
from hephaestus_django.runtime.leases import QUEUE_OWNER_PREFIX

NOTE_LIMIT = 300
"""How many characters of a step's result a tooltip shows."""


class StepState(StrEnum):
    """Where a step is in one instance; the SVG colours each box by it."""

    COMPLETED = "completed"
    ACTIVE = "running"
    """Runnable and running (on a job engine: a job has started it); the steps panel's
    word. Its CSS class stays ``hx-state-active``."""
    QUEUED = "queued"
    """On a job engine: runnable, its job not started yet (the steps panel's "queued")."""
    WAITING = "waiting"
    FAILED = "failed"
    NOT_REACHED = "not reached"
    COMPENSATING = "compensating"
    """Its ``compensate`` runs now (or waits for its next attempt)."""
    COMPENSATED = "compensated"
    """It completed, and its ``compensate`` has undone it since."""
    CANCELLED = "cancelled"
    """It was active or waiting when the instance was cancelled: it never ran to an end."""

    @property
    def css(self) -> str:
        """The class suffix: ``hx-state-not-reached``."""
        return "active" if self is StepState.ACTIVE else self.value.replace(" ", "-")


class EdgeKind(StrEnum):
    """How a transition chooses its targets."""

    STEP = "step"
    """One target."""
    FAN_OUT = "fan-out"
    """Several targets, all of which run."""
    ROUTE = "route"
    """Several declared targets; a ``Route`` picks one at run time."""


@dataclass(frozen=True, slots=True)
class Node:
    """One step: ``key`` is a stable id (``s0`` is the start step), ``label`` its display name."""

    key: str
    step: StepClass
    label: str
    rank: int
    is_start: bool
    is_end: bool
    detail: str
    """What kind of step it is, e.g. ``timer · 2 seconds``; empty for a plain step."""

    @property
    def path(self) -> str:
        return self.step.path()


@dataclass(frozen=True, slots=True)
class Edge:
    """An arrow: ``events`` of ``source`` lead to ``target``.

    Plain edges between the same two steps are merged (``cancelled / timeout``). The edges of a
    fan-out or a route share their ``group``: one event, several targets.
    """

    source: Node
    target: Node
    events: tuple[str, ...]
    kind: EdgeKind

    @property
    def label(self) -> str:
        return " / ".join(self.events)

    @property
    def group(self) -> tuple[str, str] | None:
        return None if self.kind is EdgeKind.STEP else (self.source.key, self.events[0])


@dataclass(frozen=True)
class Diagram:
    """The nodes (in topological order) and edges of one workflow."""

    workflow: str
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def node(self, step: StepClass) -> Node:
        return next(node for node in self.nodes if node.step is step)


@dataclass(frozen=True)
class Progress:
    """One instance on the graph: each step's state, the edges taken, a note per step."""

    states: Mapping[StepClass, StepState]
    taken: frozenset[tuple[StepClass, str, StepClass]] = frozenset()
    notes: Mapping[StepClass, str] = field(default_factory=dict)
    badges: Mapping[StepClass, str] = field(default_factory=dict)
    """A short word shown on a step's box instead of its state (a child step's child's
    status, :func:`child_badge`); the box keeps its state's colours."""
    links: Mapping[StepClass, str] = field(default_factory=dict)
    """Where clicking a step's box leads (a child step: its child's page)."""
    counts: Mapping[StepClass, str] = field(default_factory=dict)
    """A line under a step's box: a map step's items ("12/40 done, 3 in flight")."""

    def state(self, step: StepClass) -> StepState:
        return self.states.get(step, StepState.NOT_REACHED)

    def took(self, edge: Edge) -> bool:
        return any((edge.source.step, e, edge.target.step) in self.taken for e in edge.events)


CHILD_GONE = "gone"
"""The badge of a child step whose child no longer exists (deleted or pruned)."""


def child_badge(status: Status | str) -> str:
    """The badge of a child step whose child is in ``status`` (or :data:`CHILD_GONE`)."""
    return f"child {status.value if isinstance(status, Status) else status}"


CHILD_BADGES = tuple(child_badge(status) for status in (*Status, CHILD_GONE))
"""Every badge a child step can show: the layout sizes a child step's box for the widest."""


def build_diagram(graph: WorkflowGraph) -> Diagram:
    """The diagram of a validated workflow graph."""
    ranks = _longest_path_ranks(graph)
    labels = _labels(graph.order)
    ends = {step for step in graph.order if step.terminal}
    nodes = {
        step: Node(
            key=f"s{index}",
            step=step,
            label=labels[step],
            rank=ranks[step],
            is_start=step is graph.start,
            is_end=step in ends,
            detail=_detail(step, graph.configs.get(step, {})),
        )
        for index, step in enumerate(graph.order)
    }
    return Diagram(
        workflow=graph.workflow,
        name=graph.workflow.rsplit(".", 1)[-1],
        nodes=tuple(nodes.values()),
        edges=tuple(_edges(graph, nodes)),
    )


def _longest_path_ranks(graph: WorkflowGraph) -> dict[StepClass, int]:
    """Rank = the longest path from the start step, so every arrow points down."""
    ranks = dict.fromkeys(graph.order, 0)
    for step in graph.order:  # topological: a step's rank is final before its successors'
        for successor in graph.successors(step):
            ranks[successor] = max(ranks[successor], ranks[step] + 1)
    return ranks


def _labels(steps: tuple[StepClass, ...]) -> dict[StepClass, str]:
    """Class names; qualified names only where two steps would share one."""
    names = Counter(step.__name__ for step in steps)
    qualnames = Counter(step.__qualname__ for step in steps)
    return {
        step: step.__name__
        if names[step.__name__] == 1
        else (step.__qualname__ if qualnames[step.__qualname__] == 1 else step.path())
        for step in steps
    }


def _detail(step: StepClass, config: Mapping[str, Any]) -> str:
    if step.terminal:
        return "end"
    if issubclass(step, Wait):
        return f"timer · {_duration(config)}"
    if issubclass(step, WaitForEvent):
        timeout = config.get("timeout")
        return (
            f"waits for an event · timeout {_duration(timeout)}"
            if timeout
            else "waits for an event"
        )
    return ""


def _duration(config: Any) -> str:
    if not isinstance(config, Mapping):
        return "?"
    return f"{config.get('duration', '?')} {config.get('unit', 'seconds')}"


def _edges(graph: WorkflowGraph, nodes: Mapping[StepClass, Node]) -> list[Edge]:
    plain: dict[tuple[StepClass, StepClass], list[str]] = {}
    edges: list[Edge] = []
    for source in graph.order:
        for event in source.events:
            transition = graph.transitions.get((source, event))
            if transition is None:
                continue
            if transition.route is None and len(transition.targets) == 1:
                plain.setdefault((source, transition.targets[0]), []).append(event)
                continue
            kind = EdgeKind.ROUTE if transition.route is not None else EdgeKind.FAN_OUT
            edges.extend(
                Edge(nodes[source], nodes[target], (event,), kind) for target in transition.targets
            )
    edges.extend(
        Edge(nodes[source], nodes[target], tuple(events), EdgeKind.STEP)
        for (source, target), events in plain.items()
    )
    order = {node.step: index for index, node in enumerate(nodes.values())}
    return sorted(edges, key=lambda edge: (order[edge.source.step], order[edge.target.step]))


def progress_of(instance: Instance) -> Progress:
    """Each step's state in ``instance``, the transitions it took, and a tooltip note per step.

    A compensated step is shown compensated rather than completed, the step whose compensation
    runs as compensating, and the steps a cancelled instance stood at as cancelled (they are
    no longer active, but "not reached" would hide where it stopped).
    """
    failed = instance.error.step if instance.status is Status.FAILED and instance.error else None
    states: dict[StepClass, StepState] = dict.fromkeys(
        instance.completed_steps, StepState.COMPLETED
    )
    states.update(dict.fromkeys(instance.active_steps, StepState.ACTIVE))
    if (instance.lease_owner or "").startswith(QUEUE_OWNER_PREFIX) or instance.running:
        # on a job engine, as the steps panel tells them apart: running once a job started it
        queued = [step for step in instance.active_steps if step not in instance.running]
        states.update(dict.fromkeys(queued, StepState.QUEUED))
    states.update(dict.fromkeys(instance.waiting_steps, StepState.WAITING))
    notes: dict[StepClass, str] = {}
    taken: set[tuple[StepClass, str, StepClass]] = set()
    compensation = instance.compensation
    started_by = compensation.failure if compensation is not None else None
    for entry in instance.execution_history:
        if entry.compensating:
            if entry.error is None and entry.event == COMPENSATED:
                states[entry.step] = StepState.COMPENSATED
                notes[entry.step] = f"compensated at {entry.timestamp:%Y-%m-%d %H:%M:%S %Z}"
            elif entry.error is not None and entry.error != started_by:
                notes[entry.step] = (
                    f"compensation attempt failed at {entry.timestamp:%Y-%m-%d %H:%M:%S %Z}: "
                    f"{entry.error.error_type}: {entry.error.message}"
                )
            continue
        if entry.error is not None:  # a failed attempt that was retried
            notes[entry.step] = (
                f"attempt failed at {entry.timestamp:%Y-%m-%d %H:%M:%S %Z}: "
                f"{entry.error.error_type}: {entry.error.message}"
            )
            continue
        taken.update((entry.step, entry.event, target) for target in entry.next_steps)
        result = (
            "" if entry.context_updates is None else f"; result: {_short(entry.context_updates)}"
        )
        notes[entry.step] = (
            f"completed with “{entry.event}” at {entry.timestamp:%Y-%m-%d %H:%M:%S %Z}{result}"
        )
    for step, waiting in instance.waiting_steps.items():
        if waiting.attempt is not None:
            notes[step] = (
                f"waits to retry: attempt {waiting.attempt} at "
                f"{waiting.resume_at:%Y-%m-%d %H:%M:%S %Z}; {notes.get(step, '')}"
            ).rstrip("; ")
            continue
        timer = (
            f"; timer fires “{waiting.timer_event}” at {waiting.resume_at:%Y-%m-%d %H:%M:%S %Z}"
            if waiting.resume_at
            else ""
        )
        events = ", ".join(step.events)
        notes[step] = f"waiting since {waiting.since:%Y-%m-%d %H:%M:%S %Z} for {events}{timer}"
    cancellation = instance.cancellation
    if cancellation is not None:
        reason = f"; reason: {_short(cancellation.reason)}" if cancellation.reason else ""
        for step in cancellation.steps:
            states[step] = StepState.CANCELLED
            notes[step] = (
                f"cancelled at {cancellation.at:%Y-%m-%d %H:%M:%S %Z} before it ended{reason}"
            )
    if started_by is not None:  # the failure that started the compensations
        states[started_by.step] = StepState.FAILED
        notes[started_by.step] = (
            f"failed: {started_by.error_type}: {started_by.message}; its completed steps are "
            "compensated"
        )
    if instance.compensating and compensation is not None:
        step = compensation.pending[0]
        states[step] = StepState.COMPENSATING
        notes[step] = f"compensating: its compensate() runs; {notes.get(step, '')}".rstrip("; ")
    if failed is not None and instance.error is not None:
        states[failed] = StepState.FAILED
        what = "compensation failed" if instance.compensating else "failed"
        notes[failed] = f"{what}: {instance.error.error_type}: {instance.error.message}"
    return Progress(states=states, taken=frozenset(taken), notes=notes)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"
