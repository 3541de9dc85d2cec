"""What the admin's instance page shows, worked out from one stored row.

The row is decoded the way storage decodes it (``from_row``), so the page shows exactly what
the runner would load. A row that does not decode (corrupt state, or a workflow that is no longer
registered) still gets a page: the explanation, the graph when the workflow is known, and the
stored JSON as it is. Values are turned into plain text here; the template escapes all of it,
and the SVG escapes its own text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS
from django.utils.safestring import SafeString, mark_safe

from hephaestus_django.admin.map_progress import map_progress, with_map_counts
from hephaestus_django.core.children import children_of, parent_of
from hephaestus_django.core.engine import COMPENSATED, retry_policy
from hephaestus_django.core.errors import HephaestusError, UnknownWorkflowError
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import (
    Cancellation,
    Compensation,
    Failure,
    HistoryEntry,
    Instance,
)
from hephaestus_django.core.status import Status
from hephaestus_django.core.workflow import WorkflowDefinition, resolve_workflow
from hephaestus_django.diagram import Progress, build_diagram, progress_of, render_svg
from hephaestus_django.diagram.model import CHILD_GONE, child_badge
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.postgres import slots
from hephaestus_django.postgres.storage import parse_state
from hephaestus_django.runtime.document import from_row
from hephaestus_django.runtime.leases import QUEUE_OWNER_PREFIX


@dataclass(frozen=True)
class StepRow:
    """A step in one of the page's tables."""

    name: str
    path: str
    cells: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Relative:
    """An instance linked to the page's: its parent, or one of its children."""

    id: UUID
    step: str
    """The name of the parent's ``Child`` step that started the child."""
    workflow: str = ""
    """Its workflow's dotted path; empty when the instance no longer exists."""
    status: str = ""
    """Its status; empty when the instance no longer exists (deleted or pruned)."""

    @property
    def exists(self) -> bool:
        return bool(self.workflow)


Link = Callable[[UUID], str]
"""The URL of an instance's page, by its id."""


@dataclass(frozen=True)
class InstancePage:
    """Everything the detail template shows; ``instance`` is None when the row did not decode."""

    row: WorkflowInstance
    instance: Instance | None
    problem: str
    graph: SafeString | None
    raw_state: str
    initial: str = ""
    results: list[StepRow] = field(default_factory=list)
    history: list[StepRow] = field(default_factory=list)
    waiting: list[StepRow] = field(default_factory=list)
    active: list[StepRow] = field(default_factory=list)
    """Running steps: for ``LocalRunner``, every runnable step; on a job engine, those a
    worker's job marked, each with where it runs and since when."""
    queued: list[StepRow] = field(default_factory=list)
    """Runnable steps whose job has not started yet (``QueuedRunner`` only)."""
    in_line: list[StepRow] = field(default_factory=list)
    """Runnable steps waiting in line for a concurrency slot, each with why ("3rd in line for
    stripe, key acme")."""
    on_queue: bool = False
    completed: list[StepRow] = field(default_factory=list)
    configs: list[StepRow] = field(default_factory=list)
    metadata: str = ""
    workflow_metadata: str = ""
    """The workflow class's ``metadata`` (its umbrella's and its version's), as JSON."""
    current_step: str = ""
    error: Failure | None = None
    failed_step: str = ""
    cancellation: Cancellation | None = None
    cancelled_at: list[StepRow] = field(default_factory=list)
    """The steps the instance stood at (active or waiting) when it was cancelled."""
    compensation: Compensation | None = None
    compensated: list[StepRow] = field(default_factory=list)
    """Steps whose compensation ran, in the order they ran."""
    to_compensate: list[StepRow] = field(default_factory=list)
    """Steps whose compensation has not run yet, in the order they will; the first runs now."""
    failure_step: StepRow | None = None
    """The step whose failure started the compensations (``compensate_on_failure``)."""
    parent: Relative | None = None
    """The instance that started this one as its child."""
    children: list[Relative] = field(default_factory=list)
    """The instances this one started as children, in the order of their steps."""
    maps: list[StepRow] = field(default_factory=list)
    """The map steps reached, each with its items done, failed, in flight and in all (read
    from ``workflow_map_items`` by one aggregate per map, :mod:`~.map_progress`)."""

    @property
    def title(self) -> str:
        return f"{self.row.workflow.rsplit('.', 1)[-1]} {self.row.id}"


def instance_page(row: WorkflowInstance, *, link: Link | None = None) -> InstancePage:
    """The page for ``row``, which must carry its state as text in ``state_json``; ``link``
    gives the URL of another instance's page (a child step's box in the graph links there)."""
    workflow = _registered(row.workflow, row.workflow_version)
    try:
        document = parse_state(row.id, row.state_json)
    except HephaestusError as error:
        return InstancePage(row, None, _explain(error), _graph(workflow, None), row.state_json)
    raw = pretty(document)
    try:
        instance = from_row(row.stored_row(document))
    except HephaestusError as error:
        graph = _graph(workflow, None)
        return InstancePage(row, None, _explain(error), graph, raw)
    in_line = _in_line(row, instance)
    parent, children = _relatives(row, instance)
    maps = map_progress(row, instance)
    return InstancePage(
        row=row,
        instance=instance,
        problem="",
        graph=_graph(instance.workflow, instance, children, link, maps),
        parent=parent,
        children=children,
        maps=maps,
        raw_state=raw,
        initial=pretty(instance.context.initial),
        results=_results(instance),
        history=_history(instance),
        waiting=_waiting(instance),
        **_runnable(instance, {step.path for step in in_line}),
        in_line=in_line,
        completed=[_step(s) for s in _sorted(instance, instance.completed_steps)],
        configs=[
            _step(step, config=pretty(config))
            for step, config in instance.step_configs.items()
            if config
        ],
        metadata=pretty(instance.runtime_metadata) if instance.runtime_metadata else "",
        workflow_metadata=_workflow_metadata(instance.workflow),
        current_step=instance.current_step.__name__ if instance.current_step else "",
        error=instance.error,
        failed_step=instance.error.step.__name__ if instance.error else "",
        **_undoing(instance),
    )


def _workflow_metadata(workflow: type[WorkflowDefinition]) -> str:
    umbrella = workflow.umbrella()
    found = {**(umbrella.metadata if umbrella is not None else {}), **workflow.metadata}
    return pretty(found) if found else ""


def _registered(path: str, version: int) -> type[WorkflowDefinition] | None:
    """The class of the row's workflow and version, to draw its graph; None if unregistered."""
    try:
        return resolve_workflow(path, version)
    except UnknownWorkflowError:
        return None


def _explain(error: HephaestusError) -> str:
    until = (
        " until its workflow is registered again" if isinstance(error, UnknownWorkflowError) else ""
    )
    return (
        f"This instance cannot be decoded: {error}. It is shown below as stored; it cannot be "
        f"resumed or retried{until}, but it can be deleted."
    )


def _relatives(row: WorkflowInstance, instance: Instance) -> tuple[Relative | None, list[Relative]]:
    """The instance's parent and children, each with its workflow and status (one query, only
    for an instance that has either)."""
    link = parent_of(instance)
    started = children_of(instance)
    if link is None and not started:
        return None, []
    ids = [*([link.id] if link is not None else []), *started.values()]
    found = {
        pk: (workflow, status)
        for pk, workflow, status in WorkflowInstance.objects.using(
            row._state.db or DEFAULT_DB_ALIAS
        )
        .filter(pk__in=ids)
        .values_list("pk", "workflow", "status")
    }
    graph = instance.workflow.graph
    by_key = {step.step_key: step for step in graph.order}
    children = [
        Relative(child_id, by_key[key].__name__, *found.get(child_id, ("", "")))
        for key, child_id in sorted(
            started.items(),
            key=lambda item: graph.rank(by_key[item[0]]) if item[0] in by_key else 0,
        )
    ]
    parent = None
    if link is not None:
        step = link.step.rsplit(".", 1)[-1]
        parent = Relative(link.id, step, *found.get(link.id, ("", "")))
    return parent, children


def _graph(
    workflow: type[WorkflowDefinition] | None,
    instance: Instance | None,
    children: Sequence[Relative] = (),
    link: Link | None = None,
    maps: list[StepRow] | None = None,
) -> SafeString | None:
    if workflow is None:
        return None
    progress = progress_of(instance) if instance is not None else None
    if progress is not None and instance is not None and children:
        progress = _with_children(progress, instance, children, link)
    if progress is not None and maps:
        progress = with_map_counts(progress, instance, maps)
    # Safe: render_svg escapes every text it writes (tested with <script> in names and values).
    return mark_safe(render_svg(build_diagram(workflow.graph), progress))


def _with_children(
    progress: Progress, instance: Instance, children: Sequence[Relative], link: Link | None
) -> Progress:
    """``progress`` with each child step's box showing its child's status, linking to it."""
    by_key = {step.step_key: step for step in instance.workflow.graph.order}
    by_id = {child.id: child for child in children}
    badges, links, notes = {}, {}, dict(progress.notes)
    for key, child_id in children_of(instance).items():
        step = by_key.get(key)
        child = by_id.get(child_id)
        if step is None or child is None:
            continue
        status = child.status or CHILD_GONE
        badges[step] = child_badge(status)
        about = f"child {child_id} ({child.workflow.rsplit('.', 1)[-1] or 'deleted'}): {status}"
        notes[step] = f"{about}; {notes[step]}" if step in notes else about
        if link is not None and child.exists:
            links[step] = link(child_id)
    return replace(progress, badges=badges, links=links, notes=notes)


def _sorted(instance: Instance, steps: Any) -> list[StepClass]:
    return instance.workflow.graph.sorted(steps)


def _step(step: StepClass, **cells: Any) -> StepRow:
    return StepRow(step.__name__, step.path(), cells)


def _results(instance: Instance) -> list[StepRow]:
    by_key = {step.step_key: step for step in instance.workflow.graph.order}
    rows = []
    for key, value in instance.context.steps.items():
        step = by_key.get(key)
        name = f"{key} ({step.__name__})" if step is not None and step.__name__ != key else key
        rows.append(StepRow(name, step.path() if step else key, {"value": pretty(value)}))
    return rows


def _history(instance: Instance) -> list[StepRow]:
    """One row per entry; a failed attempt (retried) carries its ``error`` instead of a result,
    and an entry of the compensations says which kind it is (``kind``)."""
    return [
        _step(
            entry.step,
            number=number,
            event=entry.event,
            at=entry.timestamp,
            updates="" if entry.context_updates is None else pretty(entry.context_updates),
            metadata="" if not entry.metadata_updates else pretty(entry.metadata_updates),
            next=", ".join(step.__name__ for step in entry.next_steps),
            error=None if entry.error is None else entry.error,
            kind=_kind(instance, entry),
        )
        for number, entry in enumerate(instance.execution_history, start=1)
    ]


def _kind(instance: Instance, entry: HistoryEntry) -> str:
    """What a history entry records, for the page: ``""`` for a step's work (done, or an attempt
    that failed), ``"compensated"`` for a compensation that ran, ``"compensation failed"`` for
    a failed attempt at one, ``"failure compensated"`` for the failure that started them."""
    if not entry.compensating:
        return ""
    if entry.error is None:
        return "compensated" if entry.event == COMPENSATED else ""
    compensation = instance.compensation
    if compensation is not None and entry.error == compensation.failure:
        return "failure compensated"
    return "compensation failed"


def _undoing(instance: Instance) -> dict[str, Any]:
    """The page's cancellation and compensation: where a cancelled instance stood, which steps
    were compensated and which are left to be."""
    compensation = instance.compensation
    done = [
        entry.step
        for entry in instance.execution_history
        if entry.compensating and entry.error is None and entry.event == COMPENSATED
    ]
    cancellation = instance.cancellation
    return {
        "cancellation": cancellation,
        "cancelled_at": [_step(step) for step in cancellation.steps] if cancellation else [],
        "compensation": compensation,
        "compensated": [_step(step) for step in done],
        "to_compensate": [_step(step) for step in compensation.pending] if compensation else [],
        "failure_step": _step(compensation.failure.step)
        if compensation and compensation.failure
        else None,
    }


def _runnable(instance: Instance, in_line: set[str]) -> dict[str, Any]:
    """The page's ``active``, ``queued`` and ``on_queue``: which runnable steps run, and where
    (those waiting ``in_line`` for a concurrency slot are shown apart)."""
    runnable = [
        s
        for s in _sorted(instance, instance.active_steps)
        if s not in instance.waiting_steps
        and not (instance.error and s is instance.error.step)
        and s.path() not in in_line
    ]
    owner = instance.lease_owner or ""
    if not (owner.startswith(QUEUE_OWNER_PREFIX) or instance.running):
        return {"active": [_step(s) for s in runnable], "queued": [], "on_queue": False}
    marks = instance.running
    return {
        "active": [_step(s, on=marks[s].on, since=marks[s].since) for s in runnable if s in marks],
        "queued": [_step(s) for s in runnable if s not in marks],
        "on_queue": True,
    }


def _in_line(row: WorkflowInstance, instance: Instance) -> list[StepRow]:
    """The steps waiting for a concurrency slot, and where they stand (one statement, only
    for a running instance)."""
    if instance.status is not Status.RUNNING:
        return []
    graph = instance.workflow.graph.by_path
    rows = []
    for place in slots.places(row._state.db or DEFAULT_DB_ALIAS, instance.id):
        step = graph.get(place.step)
        key = f", key {place.key}" if place.key else ""
        why = f"{ordinal(place.position)} in line for {place.name}{key}"
        name = step.__name__ if step is not None else place.step
        rows.append(StepRow(name, place.step, {"why": why}))
    return rows


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _waiting(instance: Instance) -> list[StepRow]:
    """The waiting steps; one waiting to retry shows its attempt ("2 of 5") and last error."""
    rows = []
    for step, waiting in sorted(
        instance.waiting_steps.items(), key=lambda item: instance.workflow.graph.rank(item[0])
    ):
        retry: dict[str, Any] = {}
        if waiting.attempt is not None:
            policy = retry_policy(instance.workflow, step)
            retry = {
                "attempt": waiting.attempt,
                "max_attempts": policy.max_attempts if policy is not None else "",
                "last_error": _last_error(instance, step),
            }
        rows.append(
            _step(
                step,
                since=waiting.since,
                resume_at=waiting.resume_at,
                timer_event=waiting.timer_event or "",
                events=", ".join(step.events),
                **retry,
            )
        )
    return rows


def _last_error(instance: Instance, step: StepClass) -> Failure | None:
    """The failure of ``step``'s latest failed attempt."""
    for entry in reversed(instance.execution_history):
        if entry.step is step and entry.error is not None:
            return entry.error
    return None


def pretty(value: Any) -> str:
    """Indented JSON for people: tagged types (dates, Decimals, sets...) shown as plain values."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Decimal | UUID | timedelta):
        return str(value)
    if isinstance(value, bytes):
        return repr(value)
    return repr(value)
