"""The schedules in the admin: a list with each one's last and next tick, and its operations.

What a schedule does lives in ``settings.HEPHAESTUS["SCHEDULES"]``; the rows are its shared
state (``hephaestus_schedules``), which the page never writes itself: pause, resume and trigger
go through :class:`~hephaestus_django.runtime.schedules.Scheduler`, as the command does, and
need the ``operate_schedule`` permission, as does a backfill (:mod:`.backfill`). A row whose
schedule is no longer configured is shown as such and cannot be operated; the next worker start
(or ``hephaestus_schedules prune``) removes it. Links lead to exactly the schedule's instances
(the *schedule* filter of the instances' list) and to the instance of its last tick.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from hephaestus_django.admin.backfill import MAX_BACKFILL, BackfillForm
from hephaestus_django.admin.listing import ScheduleFilter
from hephaestus_django.conf import scheduler, storages
from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.models import ScheduleRecord
from hephaestus_django.runtime.schedules import Schedule, tick_id

PERMISSION = "hephaestus_django.operate_schedule"


def _configured(name: str) -> Schedule | None:
    return scheduler().schedules.get(name)


class ScheduleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only rows; the actions pause, resume and trigger the selected schedules."""

    list_display = ("name", "what", "paused", "last_run", "next_run", "instances", "backfill")
    actions = ("pause", "resume", "trigger")
    ordering = ("name",)
    backfill_template = "admin/hephaestus_django/schedulerecord/backfill.html"

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        backfill = path(
            "<path:name>/backfill/",
            self.admin_site.admin_view(self.backfill_view),
            name=f"{info}_backfill",
        )
        return [backfill, *super().get_urls()]

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
            return "not configured any more (removed at a worker's start, or by prune)"
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
        url = reverse("admin:hephaestus_django_workflowinstance_changelist")
        query = urlencode({ScheduleFilter.parameter_name: row.name})
        return format_html('<a href="{}?{}">instances</a>', url, query)

    @admin.display(description="backfill")
    def backfill(self, row: ScheduleRecord) -> str:
        if _configured(row.name) is None:
            return "-"
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        url = reverse(f"{self.admin_site.name}:{info}_backfill", args=[row.name])
        return format_html('<a href="{}">backfill…</a>', url)

    def backfill_view(self, request: HttpRequest, name: str) -> HttpResponse:
        """The range form; posted, its preview; posted again unchanged, the backfill."""
        if not self.has_operate_permission(request):
            raise PermissionDenied
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        changelist = reverse(f"{self.admin_site.name}:{info}_changelist")
        schedules = scheduler()
        schedule = schedules.schedules.get(name)
        if schedule is None:
            self.message_user(
                request,
                f"No schedule named {name[:100]!r} is configured (or it fails its checks): "
                "nothing to backfill.",
                messages.ERROR,
            )
            return HttpResponseRedirect(changelist)
        storage = storages[schedule.storage]
        form = BackfillForm(schedule, request.POST or None)
        found = None
        if request.method == "POST":
            found = form.check(schedules, storage)
            if found is not None and form.is_confirmation():
                if form.cleaned_data["fingerprint"] != found.fingerprint:
                    form.add_error(
                        None,
                        "The range or the schedule changed since the preview: check the new "
                        "preview below, then confirm it.",
                    )
                else:
                    return self._backfill(request, schedule.name, storage, form)
        if found is not None:
            # The page shows the preview of what the fields hold now: confirming posts it back.
            form.data = form.data.copy()
            form.data["fingerprint"] = found.fingerprint
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Backfill {schedule.name}",
            "schedule": schedule,
            "form": form,
            "preview": found,
            "maximum": MAX_BACKFILL,
            "changelist_url": changelist,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.backfill_template, context)

    def _backfill(
        self, request: HttpRequest, name: str, storage: Any, form: BackfillForm
    ) -> HttpResponse:
        try:
            ticks = scheduler().backfill(
                name, storage, form.cleaned_data["start"], form.cleaned_data["end"]
            )
        except HephaestusError as error:
            self.message_user(request, f"Nothing was backfilled: {error}.", messages.ERROR)
        else:
            new = sum(tick.new for tick in ticks)
            self.message_user(
                request,
                f"Backfilled {name}: {len(ticks)} tick(s), {new} instance(s) started, "
                f"{len(ticks) - new} started already.",
            )
        url = reverse("admin:hephaestus_django_workflowinstance_changelist")
        return HttpResponseRedirect(f"{url}?{urlencode({ScheduleFilter.parameter_name: name})}")

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
