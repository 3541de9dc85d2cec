"""The operations dashboard: what runs, what is late, what failed, on one admin page.

Its figures are :func:`hephaestus_django.postgres.snapshot.snapshot`, the answers
``hephaestus_status`` prints, so the page and the command cannot disagree, and the page costs the
same bounded number of index reads at a thousand rows or a million. The 24-hour chart is drawn here
as an SVG (no JavaScript, nothing loaded from elsewhere), with the colours as presentation
attributes, so it obeys a strict Content-Security-Policy, and classes the admin's stylesheet
restyles for the dark theme; a table of the same figures follows it for screen readers and for exact
values.

The page is for staff who may view workflow instances (``view_workflowinstance``). It is
linked from the admin index through :class:`OperationsDashboardAdmin`, registered for a proxy
model that has no table and no permissions of its own, and from the changelist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, router
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from hephaestus_django.admin import times
from hephaestus_django.core.naming import short_name
from hephaestus_django.models import OperationsDashboard, WorkflowInstance
from hephaestus_django.postgres import slots
from hephaestus_django.postgres.snapshot import (
    COUNT_LIMIT,
    HOUR_SAMPLE,
    STALL_GRACE,
    STATEMENT_TIMEOUT_MS,
    STATUSES,
    Count,
    Hour,
    Snapshot,
    duration,
    queue_verdict,
    snapshot,
    step_worker_verdict,
    timed_out,
)

TEMPLATE = "admin/hephaestus_django/workflowinstance/dashboard.html"
MAX_ERROR_TYPE = 255
"""The longest error type the changelist's error filter takes."""


class ErrorTypeFilter(admin.SimpleListFilter):
    """Instances whose error is of one type: ``?error_type=ValueError`` (the dashboard's links).

    Answered with ``state @> {"error": {"type": ...}}`` through the GIN index. It offers no
    choices of its own (listing the types would read every failed row); it shows, with a way
    back to "All", while a list is filtered by it.
    """

    title = "error type"
    parameter_name = "error_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        if len(value) > MAX_ERROR_TYPE or "\x00" in value:
            raise IncorrectLookupParameters("error type too long, or not text")
        return queryset.filter(state__contains={"error": {"type": value}})


def dashboard_urls(model_admin: admin.ModelAdmin[Any]) -> list[URLPattern]:
    """The dashboard's URL under the instances' admin (``.../workflowinstance/dashboard/``)."""
    info = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}"
    view = model_admin.admin_site.admin_view(lambda request: dashboard_view(model_admin, request))
    return [path("dashboard/", view, name=f"{info}_dashboard")]


def dashboard_view(model_admin: admin.ModelAdmin[Any], request: HttpRequest) -> HttpResponse:
    """The page: a snapshot of the model's database, for staff who may view instances."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    using = router.db_for_read(WorkflowInstance)
    problem = ""
    found: Snapshot | None = None
    try:
        found = snapshot(using)
    except DatabaseError as error:
        if not timed_out(error):
            raise
        problem = (
            f"The dashboard's queries took longer than {STATEMENT_TIMEOUT_MS:,} ms and were "
            "stopped; try again in a moment."
        )
    limits, limits_problem = _limit_lines(using)
    opts = model_admin.opts
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Operations dashboard",
        "opts": opts,
        "media": model_admin.media,
        "problem": problem,
        "changelist_url": changelist,
        **(page(found, changelist) if found is not None else {}),
        **limits,
        "limits_problem": limits_problem,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, TEMPLATE, context)


def _limit_lines(using: str) -> tuple[dict[str, Any], str]:
    """The card of concurrency limits (:func:`hephaestus_django.postgres.slots.lines`): what
    the template shows, and a problem to say instead when its reads timed out."""
    try:
        found = slots.lines(using)
    except DatabaseError as error:
        if not timed_out(error):
            raise
        return {}, "The concurrency limits took too long to read; try again in a moment."
    rows = []
    for line in found:
        more = "+" if line.holding >= line.cap else ""
        waiting = f"{line.waiting:,}{'+' if line.waiting >= line.cap else ''}"
        wait = line.oldest_wait
        rows.append(
            {
                "name": line.name,
                "key": line.key,
                "in_use": f"{line.holding:,}{more} / {line.limit:,}",
                "full": line.holding >= line.limit,
                "waiting": waiting if line.waiting else 0,
                "oldest": None if wait is None else duration(wait),
            }
        )
    return {
        "limit_lines": rows,
        "limits_shown": slots.LINES_SHOWN,
        "limits_more": len(found) >= slots.LINES_SHOWN,
        "limits_cap": f"{slots.LINE_COUNT_CAP:,}",
    }, ""


@dataclass(frozen=True)
class Cell:
    """A count in the workflow x status table, and the filtered list it links to."""

    text: str
    url: str
    hint: str
    zero: bool


def page(found: Snapshot, changelist: str) -> dict[str, Any]:
    """What the template shows, from the snapshot."""

    def link(**params: str) -> str:
        return f"{changelist}?{urlencode(params)}" if params else changelist

    def cell(count: Count | None, **params: str) -> Cell:
        if count is None:
            return Cell("?", link(**params), "too few to appear in PostgreSQL's statistics", False)
        hint = {
            "exact": "",
            "about": "PostgreSQL's estimate",
            "more_than": "counted up to this, and there are more",
        }[count.kind]
        return Cell(_short(count), link(**params), hint, count.value == 0)

    names = [short_name(row.workflow) for row in found.by_workflow]
    rows = [
        {
            "workflow": row.workflow,
            "name": name if names.count(name) == 1 else row.workflow,
            "url": link(workflow=row.workflow),
            "cells": [
                cell(row.statuses.get(s), workflow=row.workflow, status__exact=s) for s in STATUSES
            ],
        }
        for name, row in zip(names, found.by_workflow, strict=True)
    ]
    totals = [cell(found.by_status[s], status__exact=s) for s in STATUSES]
    lateness, stall, silence = found.worst_lateness, found.longest_stall, found.worker_silence
    return {
        "snapshot": found,
        "statuses": STATUSES,
        "rows": rows,
        "totals": totals,
        "total": found.total,
        "estimated": any(c.kind != "exact" for c in found.by_status.values()),
        "lateness": None if lateness is None else duration(lateness),
        "stall": None if stall is None else duration(stall),
        "stall_grace": duration(STALL_GRACE),
        "silence": None if silence is None else duration(silence),
        "worker_late": silence is None or silence > WORKER_SILENCE_WARNING,
        # QueuedRunner: jobs waiting for a worker, and whether a step worker is seen (None
        # with LocalRunner); judged as hephaestus_status --check judges them by default.
        "queue": found.queue,
        "queue_judged": queue_verdict(found),
        "step_workers_judged": step_worker_verdict(found),
        "waiting_url": link(status__exact="waiting"),
        "running_url": link(status__exact="running"),
        "failed_url": link(status__exact="failed"),
        "errors": [
            {"error": error, "url": link(status__exact="failed", error_type=error.type)}
            for error in found.errors
        ],
        "chart": hourly_chart(found.hours),
        "hour_sample": HOUR_SAMPLE,
        "count_limit": f"{COUNT_LIMIT:,}",
        "hours": [
            {"hour": hour, "label": times.as_text(hour.start, zone=False)[:-3]}
            for hour in found.hours
        ],
    }


WORKER_SILENCE_WARNING = STALL_GRACE * 2
"""Time since the last worker pass past which the page warns (hephaestus_status's default
``--max-worker-silence``)."""


def _short(count: Count) -> str:
    if count.kind == "about":
        return f"≈{count.value:,}"
    if count.kind == "more_than":
        return f">{count.value:,}"
    return f"{count.value:,}"


# --- the chart -------------------------------------------------------------------------------

SERIES = (
    ("started", "Started", "#1565c0"),
    ("completed", "Completed", "#2e7d32"),
    ("failed", "Failed", "#c62828"),
)
WIDTH, HEIGHT = 760.0, 250.0
LEFT, RIGHT, TOP, BOTTOM = 52.0, 14.0, 30.0, 36.0
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def hourly_chart(hours: Sequence[Hour]) -> str:
    """Started, completed and failed instances per hour, as grouped bars in an inline SVG.

    Accessible: ``role="img"`` with a ``<title>`` and a ``<desc>`` summing the day up; the
    exact figures are in the table the page shows after it. Estimated hours are drawn hatched.
    """
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max((getattr(h, key).value for h in hours for key, _, _ in SERIES), default=0)
    top = _nice(peak)
    slot = plot_w / max(len(hours), 1)
    bar = slot * 0.8 / len(SERIES)
    totals = {key: sum(getattr(h, key).value for h in hours) for key, _, _ in SERIES}
    summary = ", ".join(f"{totals[key]:,} {label.lower()}" for key, label, _ in SERIES)
    parts = [
        f'<svg class="hx-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {WIDTH:g} {HEIGHT:g}" width="100%" '
        f'font-family="{escape(FONT)}" font-size="11" aria-labelledby="hx-chart-title '
        f'hx-chart-desc">',
        '<title id="hx-chart-title">Instances started, completed and failed per hour, '
        "last 24 hours</title>",
        f'<desc id="hx-chart-desc">{escape(summary)} in the last 24 hours; the busiest hour '
        f"had {peak:,} of one kind. The table below the chart has every hour's figures.</desc>",
        '<defs><pattern id="hx-hatch" width="4" height="4" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="2" height="4" fill="#ffffff" '
        'fill-opacity="0.55"/></pattern></defs>',
    ]
    for step in range(5):  # gridlines and their values
        value = top * step / 4
        y = TOP + plot_h - plot_h * step / 4
        parts.append(
            f'<line class="hx-chart-grid" x1="{LEFT:g}" x2="{WIDTH - RIGHT:g}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#d0d0d0" stroke-width="1"/>'
            f'<text class="hx-chart-axis" x="{LEFT - 6:g}" y="{y + 4:.1f}" text-anchor="end" '
            f'fill="#555555">{_axis(value)}</text>'
        )
    for index, hour in enumerate(hours):
        x0 = LEFT + slot * index + slot * 0.1
        for position, (key, label, colour) in enumerate(SERIES):
            count: Count = getattr(hour, key)
            if count.value == 0:
                continue
            h = plot_h * count.value / top if top else 0
            x, y = x0 + bar * position, TOP + plot_h - h
            when = times.as_text(hour.start, zone=False)[:-3]
            tip = f"{label}: {count} in the hour from {when}"
            parts.append(
                f'<rect class="hx-chart-{key}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{max(h, 1):.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
            if count.kind != "exact":
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 1):.1f}" '
                    'fill="url(#hx-hatch)"/>'
                )
        if index % 3 == 0 or index == len(hours) - 1:
            label_x = LEFT + slot * index + slot / 2
            parts.append(
                f'<text class="hx-chart-axis" x="{label_x:.1f}" y="{HEIGHT - BOTTOM + 16:g}" '
                f'text-anchor="middle" fill="#555555">{times.shown(hour.start):%H:%M}</text>'
            )
    parts.append(
        f'<line class="hx-chart-base" x1="{LEFT:g}" x2="{WIDTH - RIGHT:g}" '
        f'y1="{TOP + plot_h:g}" y2="{TOP + plot_h:g}" stroke="#888888" stroke-width="1"/>'
    )
    x = LEFT
    for key, label, colour in SERIES:  # the legend, along the top
        parts.append(
            f'<rect class="hx-chart-{key}" x="{x:g}" y="8" width="12" height="12" '
            f'fill="{colour}"/><text class="hx-chart-legend" x="{x + 17:g}" y="18" '
            f'fill="#333333">{label}</text>'
        )
        x += 24 + len(label) * 7
    parts.append("</svg>")
    return "".join(parts)


def _nice(peak: int) -> int:
    """The axis's top: four gridlines of 1, 2, 2.5 or 5 times a power of ten, above ``peak``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 2.5, 5):
            step = factor * magnitude
            if step == int(step) and 4 * step >= peak:
                return int(4 * step)
        magnitude *= 10


def _axis(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


class OperationsDashboardAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The dashboard's entry in the admin index: its list is the dashboard.

    Registered for a proxy model with no permissions of its own: it shows to whoever may view
    workflow instances, and its only page redirects to the dashboard.
    """

    def _may_view(self, request: HttpRequest) -> bool:
        opts = WorkflowInstance._meta
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and (
                user.has_perm(f"{opts.app_label}.view_{opts.model_name}")
                or user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
            )
        )

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._may_view(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._may_view(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", self.admin_site.admin_view(self.changelist_view), name=f"{info}_changelist")
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self._may_view(request):
            raise PermissionDenied
        opts = WorkflowInstance._meta
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_dashboard")
        )


admin.site.register(OperationsDashboard, OperationsDashboardAdmin)
