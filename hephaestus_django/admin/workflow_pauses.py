"""The workflows held by ``Workflow.pause_all`` in the admin: a read-only list (what is held,
since when, why) with one action, releasing the selected holds as ``unpause_all`` does (the
``pause_workflowinstance`` permission). The page never writes a row itself: the runner does."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from hephaestus_django import conf
from hephaestus_django.admin.rows import NoStorageForDatabase, storage_for
from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.core.workflow import workflow_registry
from hephaestus_django.models import WorkflowPauseRecord

PERMISSION = "hephaestus_django.pause_workflowinstance"


class WorkflowPauseAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only rows; the action releases the selected holds."""

    list_display = ("workflow", "versions", "reason", "since")
    actions = ("release",)
    ordering = ("workflow", "version")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(PERMISSION))  # type: ignore[union-attr]

    @admin.display(description="versions")
    def versions(self, row: WorkflowPauseRecord) -> str:
        return "all" if not row.version else str(row.version)

    @admin.action(description="Unpause the selected workflows", permissions=["pause"])
    def release(self, request: HttpRequest, rows: QuerySet[WorkflowPauseRecord]) -> None:
        for row in rows:
            try:
                workflow = workflow_registry.resolve(row.workflow)
                count = conf.runner.get().unpause_all(
                    workflow, storage=storage_for(rows.db), version=row.version
                )
            except (HephaestusError, NoStorageForDatabase) as error:
                messages.error(request, f"{row} was not unpaused: {error}")
            else:
                messages.success(request, f"Unpaused {row}: {count} instances run on.")


admin.site.register(WorkflowPauseRecord, WorkflowPauseAdmin)
