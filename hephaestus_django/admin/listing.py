"""The admin changelist's parts that keep it fast on millions of rows.

- :class:`WorkflowFilter` and :class:`VersionFilter` take their choices from the workflow
  registry, not from ``SELECT DISTINCT`` over the table (which reads every row on every page).
- :class:`CheapCountPaginator` never counts the whole table: an unfiltered list on a large table
  shows PostgreSQL's own estimate (``pg_class.reltuples``, kept fresh by autovacuum/ANALYZE), a
  filtered one counts matching rows only up to a limit; past the first page, it selects the
  page's ids first, so the JSON paths of the list are extracted for the rows it shows only, not
  for every row an OFFSET skips.
- :func:`steps_cell` renders the current/waiting steps from five small keys of the JSONB
  ``state`` that the changelist query selects (current, active and waiting steps, and the steps
  a cancelled instance stood at or a compensating one has left to undo), so the list never
  loads a whole state and makes no query per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Page, Paginator
from django.db import DatabaseError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from hephaestus_django.admin import times
from hephaestus_django.conf import InvalidScheduleError, schedule_settings
from hephaestus_django.core.errors import UnknownWorkflowError
from hephaestus_django.core.naming import short_name
from hephaestus_django.core.text import unstorable
from hephaestus_django.core.workflow import resolve_workflow, tagged, workflow_registry
from hephaestus_django.postgres.budget import cancelled
from hephaestus_django.postgres.estimates import count_and_estimate
from hephaestus_django.runtime.filters import schedule_document
from hephaestus_django.runtime.leases import PAUSE_OWNER


def registered_workflows() -> list[tuple[str, type[Any]]]:
    """Every registered workflow class, by dotted path (sorted)."""
    found = []
    for path in workflow_registry.names():
        try:
            found.append((path, workflow_registry.resolve(path)))
        except UnknownWorkflowError:  # pragma: no cover - collected between names() and resolve()
            continue
    return found


class PausedFilter(admin.SimpleListFilter):
    """Paused instances, or those not paused: a paused instance that has not ended holds the
    pause lease (:data:`~hephaestus_django.runtime.leases.PAUSE_OWNER`), a column of the row,
    so the filter reads no ``state``."""

    title = "paused"
    parameter_name = "paused"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Paused"), ("no", "Not paused")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "yes":
            return queryset.filter(lease_owner=PAUSE_OWNER)
        if value == "no":
            return queryset.exclude(lease_owner=PAUSE_OWNER)
        return queryset


class WorkflowFilter(admin.SimpleListFilter):
    """Filter by workflow; the choices are the registered workflows (no query)."""

    title = "workflow"
    parameter_name = "workflow"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        paths = [path for path, _cls in registered_workflows()]
        names = [short_name(path) for path in paths]
        return [
            (path, name if names.count(name) == 1 else path)
            for path, name in zip(paths, names, strict=True)
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(workflow=value) if value else queryset


class VersionFilter(admin.SimpleListFilter):
    """Filter by workflow version: 1 to the highest version registered (of the chosen workflow;
    a versioned workflow's are its versions')."""

    title = "version"
    parameter_name = "version"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        chosen = request.GET.get(WorkflowFilter.parameter_name)
        versions = [
            number
            for path, cls in registered_workflows()
            if chosen in (None, path)
            for number in cls.known_versions()
        ]
        return [(str(v), f"version {v}") for v in range(1, max(versions, default=1) + 1)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not (value.isascii() and value.isdigit() and len(value) <= 9):
            raise IncorrectLookupParameters(f"version must be a number, not {value[:20]!r}")
        return queryset.filter(workflow_version=int(value))


class TagFilter(admin.SimpleListFilter):
    """Filter by tag: the workflows carrying it (``tags = (...)`` on the class), through the
    registry (no query, no column); the choices are every registered workflow's tags."""

    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tags = sorted({tag for _path, cls in registered_workflows() for tag in cls.tags})
        return [(tag, tag) for tag in tags]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(workflow__in=tagged(value)) if value else queryset


class ScheduleFilter(admin.SimpleListFilter):
    """Filter by the schedule that started the instances (a tick, a trigger or a backfill):
    ``state @> {"runtime_metadata": {"schedule": {"name": ...}}}``, answered through the GIN
    index on ``state``. The choices are the configured schedules (no query); a name no longer
    configured is still accepted, so old links keep working."""

    title = "schedule"
    parameter_name = "schedule"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        try:
            return [(name, name) for name in sorted(schedule_settings())]
        except InvalidScheduleError:
            return []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if unstorable(value) is not None:
            raise IncorrectLookupParameters("a schedule's name cannot hold that character")
        return queryset.filter(state__contains=schedule_document(value))


class CheapCountPaginator(Paginator):
    """A paginator whose count never scans the whole table.

    Rows are counted up to ``COUNT_LIMIT + 1``. Within the limit the count is exact. Past it,
    an unfiltered list shows PostgreSQL's estimate (``estimated``: "about N"), a filtered one
    the limit (``capped``: "more than N"). The estimate is only believed once the table is
    known to be large: after a mass delete it can stay high until autovacuum runs. A search's
    count that runs out of time is ``uncounted``.
    """

    # On a table of a million rows, counting 100,000 matches took ~75 ms, 10,000 a few ms, and
    # COUNT(*) of the table ~160 ms. Past these, "about N" or "more than N" serves as well.
    COUNT_LIMIT = 10_000

    estimated = False
    capped = False
    uncounted = False
    count_may_run_out = False
    """Set for a search, whose statements have a time limit: a count that runs out of it
    leaves ``uncounted`` set (and the count at the limit) instead of failing the page."""

    def page(self, number: Any) -> Page:
        """The page's rows; past the first, as ``WHERE id IN (the page's ids)``.

        The changelist's query extracts JSON paths from ``state`` (:func:`steps_cell`'s keys):
        with a plain ``OFFSET``, PostgreSQL computes them, reading each row's state, for every
        row it skips, 4,900 of them on page 50. The ids' subquery (``ORDER BY ... LIMIT ...
        OFFSET``) selects no JSON path, the outer query extracts them for the page's rows
        only, in the same statement; the first page has no offset and stays as it was.
        """
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        queryset = self.object_list
        if bottom > 0 and isinstance(queryset, QuerySet) and queryset.query.annotations:
            rows: Any = queryset.filter(pk__in=queryset.values("pk")[bottom:top])
        else:
            rows = queryset[bottom:top]
        return self._get_page(rows, number, self)

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):  # pragma: no cover - the admin passes a QuerySet
            return super().count
        if queryset.query.where:
            found = self._count_filtered(queryset)
            if found is None:
                self.uncounted = True
                return self.COUNT_LIMIT
            counted, estimate = found, -1
        else:
            counted, estimate = count_and_estimate(queryset, self.COUNT_LIMIT)
        if counted <= self.COUNT_LIMIT:
            return counted
        if estimate > self.COUNT_LIMIT:
            self.estimated = True
            return estimate
        self.capped = True
        return self.COUNT_LIMIT

    def _count_filtered(self, queryset: QuerySet[Any]) -> int | None:
        """Matching rows up to the limit; None if the count ran out of the search's time."""
        limited = queryset.order_by().values("pk")[: self.COUNT_LIMIT + 1]
        if not self.count_may_run_out:
            return limited.count()
        try:
            with transaction.atomic(using=queryset.db):  # a savepoint: the page goes on after it
                return limited.count()
        except DatabaseError as error:
            if cancelled(error):
                return None
            raise


def steps_cell(
    status: str,
    current: str | None,
    active: Sequence[str] | None,
    waiting: Mapping[str, Any] | None,
    workflow: str = "",
    *,
    cancelled_at: Any = None,
    compensating: Any = None,
    version: int = 1,
) -> str:
    """The step(s) an instance is at: waiting ones (with their timer), running ones, the step
    it failed or completed at, or those it stood at when it was cancelled, in the order of
    ``workflow``'s graph; while it compensates, the step whose compensation runs. Inputs are the
    raw JSON keys (``cancelled_at``: ``cancellation.steps``, ``compensating``:
    ``compensation.pending``); anything malformed shows as —."""
    if status in ("failed", "completed"):
        tone = status
        return _chip(current, tone, f"{tone} at") if isinstance(current, str) else "—"
    rank = _graph_positions(workflow, version)

    def position(path: str) -> tuple[int, str]:
        return rank.get(path, len(rank)), path

    if status == "cancelled":
        # Where it stood, not its current step: after compensations that is the last one undone.
        chips = [_chip(path, "cancelled", "cancelled at") for path in _paths(cancelled_at)]
        return format_html_join(" ", "{}", ((chip,) for chip in chips)) if chips else "—"
    waiting = waiting if isinstance(waiting, Mapping) else {}
    undoing = _paths(compensating)[:1]
    if undoing:  # one compensation runs at a time: the first pending one
        path = undoing[0]
        hint, timer = _timer_hint(waiting[path]) if path in waiting else ("running", False)
        return _chip(path, "compensating", f"compensating ({hint})", timer)
    active = _paths(active)
    chips = [
        _chip(path, "waiting", *_timer_hint(waiting[path]))
        for path in sorted(waiting, key=position)
    ]
    chips += [
        _chip(path, "active", "running")
        for path in sorted(active, key=position)
        if path not in waiting
    ]
    if not chips:
        return "—"
    return format_html_join(" ", "{}", ((chip,) for chip in chips))


def _paths(value: Any) -> list[str]:
    """The step paths of a raw JSON list; [] for anything else."""
    return [path for path in value if isinstance(path, str)] if isinstance(value, list) else []


def _graph_positions(workflow: str, version: int) -> dict[str, int]:
    """Each step's position in the registered workflow's graph, the graph of ``version`` for a
    versioned workflow (no query); {} if unknown."""
    try:
        graph = resolve_workflow(workflow, version).graph
    except UnknownWorkflowError:
        return {}
    return {step.path(): index for index, step in enumerate(graph.order)}


CLOCK = (
    '<svg class="hx-clock" viewBox="0 0 16 16" width="11" height="11" aria-label="timer">'
    '<circle cx="8" cy="8" r="6.3" fill="none" stroke="currentColor" stroke-width="1.7"/>'
    '<path d="M8 4.4V8l2.6 1.6" fill="none" stroke="currentColor" stroke-width="1.7" '
    'stroke-linecap="round"/></svg> '
)


def _chip(path: str, tone: str, hint: str, timer: bool = False) -> str:
    return format_html(
        '<span class="hx-step hx-step-{}" title="{} — {}">{}{}</span>',
        tone,
        path,
        hint,
        mark_safe(CLOCK) if timer else "",
        short_name(path),
    )


def _timer_hint(info: Any) -> tuple[str, bool]:
    """The chip's tooltip, and whether a timer is set."""
    if not isinstance(info, Mapping):
        return "waiting", False
    since, due = _parse(info.get("since")), _parse(info.get("resume_at"))
    hint = f"waiting since {since}" if since else "waiting"
    if due and info.get("attempt") is not None:
        hint += f"; attempt {info.get('attempt')} (a retry) at {due}"
    elif due:
        hint += f"; timer fires {info.get('timer_event') or 'its event'} at {due}"
    return hint, due is not None


def _parse(value: Any) -> str | None:
    """A stored ISO 8601 time as the admin shows times, as text; None if it is not one."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return None if moment is None else times.as_text(moment)
