"""Browse workflow instances in the Django admin.

The changelist never loads the JSONB ``state`` (it is deferred; the current
step is read as one key), so it stays cheap on large tables. Search takes an
instance id, or context values (``order_id=123``, ``customer.tier=gold`` or a
JSON object) answered with ``state__contains`` through the GIN index. Instances
are read-only here: they change only through the runner and storage.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils.html import format_html

from hephaestus_django.core.errors import HephaestusError
from hephaestus_django.core.naming import short_name
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.document import from_row
from hephaestus_django.search import context_filter

SEARCH_HELP = (
    "Search by instance id, or by context values: order_id=123, customer.tier=gold, "
    'or a JSON object such as {"customer": {"tier": "gold"}}.'
)


@admin.register(WorkflowInstance)
class WorkflowInstanceAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "workflow_name",
        "workflow_version",
        "status",
        "current_step",
        "inserted_at",
        "updated_at",
    )
    list_filter = ("status", "workflow", "workflow_version", "inserted_at")
    search_fields = ("=id",)
    search_help_text = SEARCH_HELP
    ordering = ("-inserted_at", "id")
    date_hierarchy = "inserted_at"
    readonly_fields = (
        "id",
        "workflow",
        "workflow_version",
        "status",
        "revision",
        "inserted_at",
        "updated_at",
        "context",
        "raw_state",
    )
    fields = readonly_fields
    show_full_result_count = False  # no COUNT(*) over the whole table on every page

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowInstance]:
        # The state is never loaded through the model field: the list reads one key of it,
        # the detail page its raw text, which shows even when the row does not decode.
        queryset = super().get_queryset(request).defer("state")
        match = request.resolver_match
        if match and match.url_name and match.url_name.endswith("changelist"):
            return queryset.annotate(current_step_path=KT("state__current_step"))
        return queryset.annotate(state_json=Cast("state", TextField()))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WorkflowInstance], search_term: str
    ) -> tuple[QuerySet[WorkflowInstance], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(id=uuid.UUID(term)), False
        except ValueError:
            pass
        wanted = context_filter(term)
        if wanted is not None:
            return queryset.filter(state__contains=wanted), False
        return queryset.filter(workflow__icontains=term), False

    @admin.display(description="workflow", ordering="workflow")
    def workflow_name(self, row: WorkflowInstance) -> str:
        return format_html('<span title="{}">{}</span>', row.workflow, short_name(row.workflow))

    @admin.display(description="current step")
    def current_step(self, row: WorkflowInstance) -> str:
        path = getattr(row, "current_step_path", None)
        return short_name(path) if path else "—"

    @admin.display(description="context")
    def context(self, row: WorkflowInstance) -> str:
        try:
            context = from_row(row.stored_row(codec.loads(row.state_json))).context
        except HephaestusError as error:
            return format_html("<p>This instance cannot be decoded: {}</p>", str(error))
        return _pretty({"initial": context.initial, "steps": context.steps})

    @admin.display(description="stored state (raw JSON)")
    def raw_state(self, row: WorkflowInstance) -> str:
        return _pretty(codec.loads(row.state_json))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)
