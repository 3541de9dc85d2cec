"""Bulk operations from the admin's changelist: retry, cancel, rewind, upgrade, compensate,
pause and unpause the selected rows, or all the rows matching the current filters.

An action leads to a confirmation page with the count of instances it would take now (and the
operation's options: the step of a rewind, the version of an upgrade, the reason of a cancel);
confirming stores a bulk operation (:mod:`~hephaestus_django.runtime.bulk`) that the worker
runs in batches, and lands on its progress page (done, refused with the reasons, remaining).

Each operation needs the permission of the same operation on one instance (compensate needs
cancel's: it undoes what was done; pause and unpause ``pause_workflowinstance``). "All
matching" carries the changelist's workflow, status, version, tag and date filters; a search or
another filter cannot be carried into a background operation and is refused with a message.
Bad input is a message or a form error, never a server error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from hephaestus_django import conf
from hephaestus_django.admin.rows import NoStorageForDatabase, storage_for
from hephaestus_django.core.errors import HephaestusError, UnknownWorkflowError
from hephaestus_django.core.instance import instance_key
from hephaestus_django.core.workflow import WorkflowDefinition, workflow_registry
from hephaestus_django.runtime import bulk
from hephaestus_django.runtime.config import backends

PERMISSION = {
    "retry": "retry",
    "cancel": "cancel",
    "rewind": "rewind",
    "upgrade": "upgrade",
    "compensate": "cancel",
    "pause": "pause",
    "unpause": "pause",
}
"""The instance operation whose permission each bulk operation needs."""

CARRIED = {"workflow", "status__exact", "version", "tag", "inserted_at__gte", "inserted_at__lt"}
"""The changelist's filters an "all matching" operation carries over."""

IGNORED = {"o", "p", "_changelist_filters", "all"}
"""Query parameters that do not select rows (ordering, page)."""

SHOWN_REFUSALS = 100


class BulkOptionsForm(forms.Form):
    """The options of the operation, as far as it takes any."""

    to = forms.ChoiceField(label="Rewind to step", required=False)
    to_version = forms.IntegerField(label="Upgrade to version", required=False, min_value=1)
    reason = forms.CharField(label="Reason", required=False, max_length=1000)
    compensate = forms.BooleanField(label="Compensate completed steps", required=False)

    def __init__(self, operation: str, workflow: type[WorkflowDefinition] | None, *args: Any):
        super().__init__(*args)
        verb = bulk.operation(operation)
        for name in list(self.fields):
            if name not in verb.options:
                del self.fields[name]
        if "to" in self.fields:
            steps = [] if workflow is None else sorted(workflow.graph.by_path)
            self.fields["to"].choices = [(step, step.rsplit(".", 1)[-1]) for step in steps]
            self.fields["to"].required = True
        if "to_version" in self.fields:
            self.fields["to_version"].required = True

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "", False)}


def _bulk_action(operation: str) -> Any:
    def action(admin_obj: Any, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        return admin_obj.start_bulk(request, queryset, operation)

    action.__name__ = f"bulk_{operation}"
    action.short_description = f"{operation.capitalize()}…"  # type: ignore[attr-defined]
    action.allowed_permissions = (f"bulk_{operation}",)  # type: ignore[attr-defined]
    return action


class BulkActionsMixin:
    """The changelist actions, the confirmation page and the progress page."""

    opts: Any
    admin_site: Any
    message_user: Any

    actions = [_bulk_action(name) for name in bulk.OPERATIONS]

    def bulk_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("bulk/<str:operation>/", wrap(self.bulk_confirm_view), name=f"{info}_bulk"),
            path(
                "bulk-operations/<str:bulk_id>/",
                wrap(self.bulk_progress_view),
                name=f"{info}_bulk_progress",
            ),
        ]

    def _may(self, request: HttpRequest, operation: str) -> bool:
        verb = PERMISSION.get(operation)
        if verb is None:
            return False
        return bool(request.user.has_perm(f"{self.opts.app_label}.{verb}_{self.opts.model_name}"))

    # Django asks has_<name>_permission for an action's allowed_permissions.
    def has_bulk_retry_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "retry")

    def has_bulk_cancel_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "cancel")

    def has_bulk_rewind_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "rewind")

    def has_bulk_upgrade_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "upgrade")

    def has_bulk_compensate_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "compensate")

    def has_bulk_pause_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "pause") and bulk.OPERATIONS["pause"].available(_runner())

    def has_bulk_unpause_permission(self, request: HttpRequest) -> bool:
        return self._may(request, "unpause") and bulk.OPERATIONS["unpause"].available(_runner())

    def start_bulk(
        self, request: HttpRequest, queryset: QuerySet[Any], operation: str
    ) -> HttpResponseRedirect:
        """The action: to the confirmation page, with the picked ids or the filters."""
        url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_bulk", args=[operation])
        if request.POST.get("select_across") == "1":
            query = {k: v for k, v in request.GET.items() if k not in IGNORED}
            query["all"] = "1"
            return HttpResponseRedirect(f"{url}?{urlencode(query)}")
        ids = [str(pk) for pk in queryset.values_list("pk", flat=True)[: bulk.MAX_IDS]]
        return HttpResponseRedirect(f"{url}?{urlencode({'ids': ','.join(ids)})}")

    def bulk_confirm_view(self, request: HttpRequest, operation: str) -> HttpResponse:
        if operation not in bulk.OPERATIONS or not self._may(request, operation):
            raise PermissionDenied
        changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        try:
            storage = storage_for(self.opts.model.objects.db)
            workflow, filters = _selection(request.GET)
            form = BulkOptionsForm(
                operation, workflow, request.POST if request.method == "POST" else None
            )
            base = bulk.spec(
                operation,
                workflow,
                filters=filters,
                options=_placeholders(operation, workflow),
                runner=_runner(),
            )
            count = bulk.count(storage, base)
        except (HephaestusError, NoStorageForDatabase, ValueError) as error:
            self.message_user(
                request, f"Cannot {operation} these instances: {error}", messages.ERROR
            )
            return HttpResponseRedirect(changelist)
        if request.method == "POST" and form.is_valid():
            try:
                request_spec = bulk.spec(
                    operation,
                    workflow,
                    filters=filters,
                    options=form.options(),
                    runner=_runner(),
                )
                made = bulk.create(
                    storage, request_spec, runner=_runner(), alias=_alias_of(storage)
                )
            except HephaestusError as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request,
                    f"Bulk {operation} {made.id} stored: the worker runs it in batches.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse(
                        f"admin:{self.opts.app_label}_{self.opts.model_name}_bulk_progress",
                        args=[made.id],
                    )
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{operation.capitalize()} {count} instance(s)",
            "operation": operation,
            "count": count,
            "spec": base,
            "form": form,
            "changelist_url": changelist,
        }
        return TemplateResponse(request, "admin/hephaestus_django/bulk/confirm.html", context)

    def bulk_progress_view(self, request: HttpRequest, bulk_id: str) -> HttpResponse:
        if not any(self._may(request, name) for name in bulk.OPERATIONS):
            raise PermissionDenied
        changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        try:
            storage = storage_for(self.opts.model.objects.db)
            keeper = bulk.table(storage)
            if instance_key(bulk_id) is None:
                raise HephaestusError(f"no bulk operation {bulk_id}")
            state = keeper.bulk_state(bulk_id)
            remaining = 0 if state.finished else keeper.count_bulk(state)
            refusals = keeper.bulk_refusals(state.id, SHOWN_REFUSALS)
        except (HephaestusError, NoStorageForDatabase) as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Bulk {state.operation} {state.id}",
            "state": state,
            "remaining": remaining,
            "refusals": refusals,
            "more_refused": max(state.refused - len(refusals), 0),
            "changelist_url": changelist,
        }
        return TemplateResponse(request, "admin/hephaestus_django/bulk/progress.html", context)


def _runner() -> Any:
    return backends.runner()


def _alias_of(storage: object) -> str | None:
    """The alias ``settings.HEPHAESTUS["STORAGES"]`` names ``storage`` by (for a queued job)."""
    for alias in conf.storages:
        try:
            if conf.storages[alias] is storage:
                return str(alias)
        except ImproperlyConfigured:
            continue
    return None


def _placeholders(operation: str, workflow: type[WorkflowDefinition] | None) -> dict[str, Any]:
    """Options that let the count be checked before the form is filled in."""
    verb = bulk.operation(operation)
    given: dict[str, Any] = {}
    if "to" in verb.required:
        given["to"] = "-"
    if "to_version" in verb.required and workflow is not None:
        given["to_version"] = getattr(workflow, "version", 1)
    return given


def _selection(query: QueryDict) -> tuple[type[WorkflowDefinition] | None, dict[str, Any]]:
    """The workflow and filters the confirmation page's query string names."""
    if query.get("all") != "1":
        ids = [part for part in query.get("ids", "").split(",") if part]
        if not ids:
            raise ValueError("no instance was selected")
        return _workflow_named(query.get("workflow")), {"ids": ids}
    unknown = sorted(set(query) - CARRIED - IGNORED)
    if unknown:
        raise ValueError(
            f"the filter(s) {', '.join(unknown)} cannot be carried into a bulk operation; pick "
            "the rows, or narrow the list with the workflow, status, version, tag and date "
            "filters only"
        )
    workflow = _workflow_named(query.get("workflow"))
    if workflow is None:
        raise ValueError("pick a workflow in the filters first")
    filters: dict[str, Any] = {}
    if query.get("status__exact"):
        filters["status"] = query["status__exact"]
    if query.get("version"):
        try:
            filters["workflow_version"] = int(query["version"])
        except ValueError:
            raise ValueError(f"version {query['version']!r} is not a number") from None
    if query.get("tag"):
        filters["tag"] = query["tag"]
    for name, bound in (("inserted_at__gte", "since"), ("inserted_at__lt", "until")):
        if query.get(name):
            filters[bound] = _moment(query[name])
    return workflow, filters


def _workflow_named(name: str | None) -> type[WorkflowDefinition] | None:
    if not name:
        return None
    try:
        found = workflow_registry.resolve(name)
    except UnknownWorkflowError as error:
        raise ValueError(str(error)) from None
    return found.umbrella() or found


def _moment(text: str) -> datetime:
    """A date filter's bound (the date filter's ``YYYY-MM-DD``, or a time), in ``TIME_ZONE``."""
    value = parse_datetime(text)
    if value is None:
        day = parse_date(text)
        if day is None:
            raise ValueError(f"{text!r} is not a date")
        value = datetime(day.year, day.month, day.day)
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return value
