"""The schedules in the admin: a list with each one's last and next tick, and its operations.

What a schedule does lives in ``settings.HEPHAESTUS["SCHEDULES"]``; the rows are its shared
state (``hephaestus_schedules``), which the page never writes itself: pause, resume and trigger
go through :class:`~hephaestus_django.runtime.schedules.Scheduler`, as the command does, and
need the ``operate_schedule`` permission. A row whose schedule is no longer configured is shown
as such and cannot be operated. Links lead to the schedule's instances (the workflow filter of
the instances' list) and to the instance of its last tick.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from hephaestus_django.admin.listing import WorkflowFilter
from hephaestus_django.conf import scheduler, storages
from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.models import ScheduleRecord
from hephaestus_django.runtime.schedules import Schedule, tick_id

PERMISSION = "hephaestus_django.operate_schedule"


def _configured(name: str) -> Schedule | None:
    return scheduler().schedules.get(name)


class ScheduleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only rows; the actions pause, resume and trigger the selected schedules."""

    list_display = ("name", "what", "paused", "last_run", "next_run", "instances")
    actions = ("pause", "resume", "trigger")
    ordering = ("name",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(PERMISSION))  # type: ignore[union-attr]

    @admin.display(description="schedule")
    def what(self, row: ScheduleRecord) -> str:
        schedule = _configured(row.name)
        if schedule is None:
            return "not configured any more"
        return f"{schedule.cron} ({schedule.timezone}) → {schedule.workflow}"

    @admin.display(description="last tick")
    def last_run(self, row: ScheduleRecord) -> str:
        schedule = _configured(row.name)
        if row.last_tick is None or schedule is None:
            return "-"
        url = reverse(
            "admin:hephaestus_django_workflowinstance_change",
            args=[tick_id(row.name, row.last_tick)],
        )
        return format_html(
            '<a href="{}">{}</a>', url, row.last_tick.astimezone(schedule.zone).isoformat()
        )

    @admin.display(description="next tick")
    def next_run(self, row: ScheduleRecord) -> str:
        schedule = _configured(row.name)
        if schedule is None or row.paused:
            return "paused" if row.paused else "-"
        return schedule.next_tick(storages[schedule.storage].now()).isoformat()

    @admin.display(description="instances")
    def instances(self, row: ScheduleRecord) -> str:
        schedule = _configured(row.name)
        if schedule is None:
            return "-"
        url = reverse("admin:hephaestus_django_workflowinstance_changelist")
        return format_html(
            '<a href="{}?{}={}">instances</a>',
            url,
            WorkflowFilter.parameter_name,
            schedule.workflow,
        )

    def _operate(self, request: HttpRequest, rows: QuerySet[ScheduleRecord], verb: str) -> None:
        schedules = scheduler()
        done = []
        for row in rows:
            try:
                schedule = schedules.get(row.name)
                storage = storages[schedule.storage]
                if verb == "trigger":
                    started = schedules.trigger(row.name, storage)
                    done.append(f"{row.name} ({started.instance_id})")
                elif getattr(schedules, verb)(row.name, storage):
                    done.append(row.name)
            except HephaestusError as error:
                self.message_user(request, str(error), messages.ERROR)
        if done:
            said = {"pause": "Paused", "resume": "Resumed", "trigger": "Started"}[verb]
            self.message_user(request, f"{said}: {', '.join(done)}.")

    @admin.action(description="Pause the selected schedules", permissions=["operate"])
    def pause(self, request: HttpRequest, rows: QuerySet[ScheduleRecord]) -> None:
        self._operate(request, rows, "pause")

    @admin.action(description="Resume the selected schedules", permissions=["operate"])
    def resume(self, request: HttpRequest, rows: QuerySet[ScheduleRecord]) -> None:
        self._operate(request, rows, "resume")

    @admin.action(description="Start the selected schedules now", permissions=["operate"])
    def trigger(self, request: HttpRequest, rows: QuerySet[ScheduleRecord]) -> None:
        self._operate(request, rows, "trigger")


admin.site.register(ScheduleRecord, ScheduleAdmin)
