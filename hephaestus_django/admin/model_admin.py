"""Browse, search and operate workflow instances in the Django admin.

The changelist stays cheap on large tables: ``state`` is deferred and only a few small keys of it
are selected (current, active and waiting steps; where a cancelled instance stood, what a
compensating one has left to undo), the filters take their choices from the
workflow registry instead of ``SELECT DISTINCT``, and the paginator never counts the whole table
(see :mod:`hephaestus_django.admin.listing`). Search takes an instance id, or context values
(``order_id=123``, ``customer.tier=gold`` or a JSON object) answered with ``state @> ...``
through the GIN index (:mod:`hephaestus_django.admin.search`).

The instance page is read-only and shows the workflow graph with the instance's progress on it
(:mod:`hephaestus_django.admin.detail`). Instances change only through the runner and storage:
resume, retry, cancel and delete each have a permission and a confirmation page that refuses to
act on a stale view (:mod:`hephaestus_django.admin.operations`).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet, TextField
from django.db.models.fields.json import KT, KeyTransform
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from hephaestus_django import conf
from hephaestus_django.admin.bounded_search import SearchMixin
from hephaestus_django.admin.bulk import BulkActionsMixin
from hephaestus_django.admin.dashboard import ErrorTypeFilter, dashboard_urls
from hephaestus_django.admin.detail import instance_page
from hephaestus_django.admin.listing import (
    CheapCountPaginator,
    PausedFilter,
    ScheduleFilter,
    TagFilter,
    VersionFilter,
    WorkflowFilter,
    steps_cell,
)
from hephaestus_django.admin.operations import (
    CANCELLABLE,
    REWINDABLE,
    OperationsMixin,
    page_context,
)
from hephaestus_django.admin.rows import storage_for
from hephaestus_django.admin.times import moment
from hephaestus_django.core.engine import waits_for_an_event
from hephaestus_django.core.naming import short_name
from hephaestus_django.core.pause import PAUSABLE, is_paused
from hephaestus_django.core.status import Status
from hephaestus_django.core.upgrades import upgrade_target
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime.leases import is_pause_lease

SEARCH_HELP = (
    "Search by instance id, by business key (key:order-A-1001, or the key alone), or by "
    "values in the context the instance was started with: order_id=123, customer.tier=gold, "
    'order_id="123" (the string), or a JSON object such as {"customer": {"tier": "gold"}}. '
    "Several key=value terms must all match. Any other text matches a business key exactly or "
    "the workflow's name."
)
KEY_SHOWN = 24
"""Characters of a business key the list shows; the whole key is in its tooltip."""

STATUSES = frozenset(status.value for status in Status)


@admin.register(WorkflowInstance)
class WorkflowInstanceAdmin(SearchMixin, BulkActionsMixin, OperationsMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "short_id",
        "workflow_name",
        "status_badge",
        "steps",
        "inserted",
        "updated",
    )
    list_filter = (
        "status",
        PausedFilter,
        WorkflowFilter,
        VersionFilter,
        TagFilter,
        ScheduleFilter,
        "inserted_at",
        "updated_at",
        ErrorTypeFilter,
    )
    search_fields = ("=id",)
    search_help_text = SEARCH_HELP
    ordering = ("-inserted_at", "id")
    paginator = CheapCountPaginator
    show_full_result_count = False  # no COUNT(*) over the whole table on every page
    # Facet counts would run a COUNT per filter choice over the table: not on millions of rows.
    show_facets = admin.ShowFacets.NEVER
    detail_template = "admin/hephaestus_django/workflowinstance/detail.html"

    class Media:
        css = {"all": ["hephaestus_django/admin.css"]}

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        # Before the defaults: their "<path:object_id>/" would swallow these.
        return [
            *self.bulk_urls(),  # first: "bulk/retry/" would be instance "bulk"'s retry page
            path("<path:object_id>/resume/", wrap(self.resume_view), name=f"{info}_resume"),
            path("<path:object_id>/retry/", wrap(self.retry_view), name=f"{info}_retry"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name=f"{info}_cancel"),
            path("<path:object_id>/upgrade/", wrap(self.upgrade_view), name=f"{info}_upgrade"),
            path("<path:object_id>/rewind/", wrap(self.rewind_view), name=f"{info}_rewind"),
            path("<path:object_id>/fork/", wrap(self.fork_view), name=f"{info}_fork"),
            path("<path:object_id>/pause/", wrap(self.pause_view), name=f"{info}_pause"),
            path("<path:object_id>/unpause/", wrap(self.unpause_view), name=f"{info}_unpause"),
            path("<path:object_id>/state.json", wrap(self.state_view), name=f"{info}_state"),
            *dashboard_urls(self),
            *super().get_urls(),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowInstance]:
        # The state is never loaded through the model field: the list reads three keys of it,
        # the other pages its raw text, which shows even when the row does not decode.
        queryset = super().get_queryset(request).defer("state")
        match = request.resolver_match
        if match and match.url_name and match.url_name.endswith("changelist"):
            # Nor the running marks: the instance page shows them, the list does not.
            return queryset.defer("running").annotate(
                current_step_path=KT("state__current_step"),
                active_step_paths=KeyTransform("active_steps", "state"),
                waiting_step_map=KeyTransform("waiting_steps", "state"),
                cancelled_at_paths=KeyTransform("steps", KeyTransform("cancellation", "state")),
                compensation_pending_paths=KeyTransform(
                    "pending", KeyTransform("compensation", "state")
                ),
            )
        return queryset.annotate(state_json=Cast("state", TextField()))

    # --- columns ---------------------------------------------------------------------------

    # The business key, when there is one, goes under the id: the caller's own name for the
    # instance is what an operator looks for, and a column of its own would not fit.
    @admin.display(description="id / key", ordering="id")
    def short_id(self, row: WorkflowInstance) -> str:
        text = str(row.pk)
        shown = format_html('<span class="hx-id" title="{}">{}…</span>', text, text[:8])
        key = row.business_key
        if not key:
            return shown
        short = key if len(key) <= KEY_SHOWN else key[: KEY_SHOWN - 1] + "…"
        return format_html(
            '{}<br><span class="hx-key" title="business key: {}">{}</span>', shown, key, short
        )

    # The version shares the workflow's column: a column of its own was a header wider than
    # its digit, and the list must fit beside the navigation sidebar and the filters.
    @admin.display(description="workflow", ordering="workflow")
    def workflow_name(self, row: WorkflowInstance) -> str:
        return format_html(
            '<span title="{}, version {}">{}</span> <span class="hx-version">v{}</span>',
            row.workflow,
            row.workflow_version,
            short_name(row.workflow),
            row.workflow_version,
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, row: WorkflowInstance) -> str:
        known = row.status in STATUSES
        badge = format_html(
            '<span class="hx-badge hx-status-{}">{}</span>',
            row.status if known else "unknown",
            row.status,
        )
        if not is_pause_lease(row.lease_owner):  # a paused instance holds the pause lease
            return badge
        return format_html('{} <span class="hx-badge hx-paused">paused</span>', badge)

    @admin.display(description="inserted at", ordering="inserted_at")
    def inserted(self, row: WorkflowInstance) -> str:
        return moment(row.inserted_at)

    @admin.display(description="updated at", ordering="updated_at")
    def updated(self, row: WorkflowInstance) -> str:
        return moment(row.updated_at)

    @admin.display(description="current step")
    def steps(self, row: WorkflowInstance) -> str:
        return steps_cell(
            row.status,
            getattr(row, "current_step_path", None),
            getattr(row, "active_step_paths", None),
            getattr(row, "waiting_step_map", None),
            row.workflow,
            cancelled_at=getattr(row, "cancelled_at_paths", None),
            compensating=getattr(row, "compensation_pending_paths", None),
            version=row.workflow_version,
        )

    # --- the instance page -----------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The read-only instance page (instances are never edited as a form)."""
        row = self.get_object(request, unquote(object_id))
        if row is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, row):
            raise PermissionDenied
        change = f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change"
        page = instance_page(row, link=lambda pk: reverse(change, args=[pk]))
        instance = page.instance
        status = instance.status if instance else None
        # A failed instance whose steps were all compensated cannot be retried (the runner
        # refuses it): no button for it.
        compensated = bool(instance and instance.compensation and instance.compensation.done)
        paused = bool(instance and is_paused(instance))
        context = {
            **self.admin_site.each_context(request),
            **page_context(self.opts, row),
            "title": page.title,
            "page": page,
            "state_url": reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_state",
                args=[row.pk],
            ),
            "media": self.media,
            "can_resume": status is Status.WAITING
            and page.instance is not None
            and waits_for_an_event(page.instance)
            and self.has_resume_permission(request),
            "can_retry": status is Status.FAILED
            and not compensated
            and self.has_retry_permission(request),
            "can_cancel": status in CANCELLABLE
            and instance is not None
            and not instance.compensating
            and self.has_cancel_permission(request),
            "can_upgrade": instance is not None
            and upgrade_target(instance) is not None
            and self.has_upgrade_permission(request),
            "can_rewind": status in REWINDABLE
            and instance is not None
            and instance.compensation is None
            and self.has_rewind_permission(request),
            "can_fork": status is not None
            and status is not Status.PENDING
            and instance is not None
            and not instance.compensating
            and self.has_fork_permission(request),
            "paused": paused,
            "can_pause": status in PAUSABLE
            and instance is not None
            and not paused
            and self.has_pause_permission(request),
            "can_unpause": paused and self.has_pause_permission(request),
            "can_delete": self.has_delete_permission(request, row),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.detail_template, context)

    def state_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The whole stored state as JSON text, for the blocks the instance page cuts short."""
        row = self.get_object(request, unquote(object_id))
        if row is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, row):
            raise PermissionDenied
        return HttpResponse(row.state_json, content_type="application/json; charset=utf-8")

    # --- instances change only through the runner and storage -------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: WorkflowInstance) -> None:
        # Through the runner: the slots it holds go to the next in line with the delete.
        conf.runner.get().delete(obj.pk, storage=storage_for(obj._state.db or "default"))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WorkflowInstance]) -> None:
        """The "delete selected" action, through the storage as well."""
        storage = storage_for(queryset.db)
        for pk in queryset.values_list("pk", flat=True):
            conf.runner.get().delete(pk, storage=storage)
