"""The progress of an instance's map steps on its admin page: items done, failed for good, in
flight, and in all, per map step reached.

Read with one aggregate per map step (``map_counts``, :data:`~hephaestus_django.postgres.sql.
MAP_ITEM_COUNTS`): no item row is loaded, however long the list. The total is the list's length
(the step's result once it completed; else what ``over`` returns from the context, as the
runner reads it; unknown when that raises).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS

from hephaestus_django.core.maps import Map, is_map
from hephaestus_django.core.rewind import items_key
from hephaestus_django.postgres import map_items

if TYPE_CHECKING:
    from hephaestus_django.admin.detail import StepRow
    from hephaestus_django.core.instance import Instance
    from hephaestus_django.diagram.model import Progress
    from hephaestus_django.models import WorkflowInstance


def map_progress(row: WorkflowInstance, instance: Instance) -> list[StepRow]:
    """A row per map step of ``instance`` that is running, done or failed, with its counts."""
    from hephaestus_django.admin.detail import StepRow

    reached = {
        *instance.active_steps,
        *instance.completed_steps,
        *((instance.error.step,) if instance.error is not None else ()),
    }
    using = row._state.db or DEFAULT_DB_ALIAS
    rows = []
    for step in instance.workflow.graph.sorted(reached):
        if not is_map(step):
            continue
        counts = map_items.counts(using, instance.id, items_key(instance, step))
        cells = {
            "done": counts.done,
            "failed": counts.failed,
            "running": counts.running,
            "total": _total(instance, step),
        }
        rows.append(StepRow(step.__name__, step.path(), cells))
    return rows


def _total(instance: Instance, step: Any) -> int | None:
    assert issubclass(step, Map)
    if step in instance.completed_steps:
        result = instance.context.steps.get(step.step_key)
        if isinstance(result, list):
            return len(result)
    try:
        items = step().over(instance.context)
    except Exception:  # the runner reports it; the page shows the total as unknown
        return None
    return len(items) if isinstance(items, (list, tuple)) else None


def with_map_counts(progress: Progress, instance: Instance | None, maps: list[StepRow]) -> Progress:
    """``progress`` with each map step's counts as the line its node shows under its name."""
    if instance is None:
        return progress
    by_path = {row.path: row for row in maps}
    counts = dict(progress.counts)
    for path, found in by_path.items():
        step = instance.workflow.graph.by_path.get(path)
        if step is None:
            continue
        cells = found.cells
        total = "?" if cells["total"] is None else cells["total"]
        text = f"{cells['done']}/{total} done"
        if cells["failed"]:
            text += f", {cells['failed']} failed"
        if cells["running"]:
            text += f", {cells['running']} in flight"
        counts[step] = text
    return replace(progress, counts=counts)
