"""The changelist's search, bounded in size and in time, so no term is a server error.

Anyone with view permission can type anything into the search box, and repeat it. So:

- an address whose query string is longer than
  :data:`~hephaestus_django.admin.limits.QUERY_MAX_CHARS` is not parsed past that limit, and
  lists nothing;
- a term longer than :data:`~hephaestus_django.admin.limits.SEARCH_MAX_CHARS`, or with a NUL, is
  refused before Django's changelist sees it (Django echoes the term into every filter and page
  link, which for a 1 MB term is tens of megabytes of HTML), and the search box keeps only its
  start;
- a term that cannot be searched (:mod:`hephaestus_django.admin.search` says why) lists
  nothing, with the reason as a message;
- every statement of a search runs with :data:`SEARCH_TIMEOUT_MS` as PostgreSQL's
  ``statement_timeout`` (:mod:`hephaestus_django.postgres.budget`). A count that runs out leaves
  the list shown, marked as not counted; a listing that runs out shows nothing but a message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.paginator import Paginator
from django.db import DatabaseError, router
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict

from hephaestus_django.admin.limits import (
    QUERY_MAX_CHARS,
    SEARCH_MAX_CHARS,
    check_characters,
    check_length,
)
from hephaestus_django.admin.search import TERM, search_filter
from hephaestus_django.core.errors import InvalidQueryError
from hephaestus_django.postgres.budget import cancelled, statement_timeout

SEARCH_TIMEOUT_MS = 30
"""How long each statement of a search may run. A search makes two: the count, the page."""

TIMED_OUT = (
    "Nothing was listed: the search took longer than {limit} ms, the limit, and was cancelled. "
    "Narrow it down: add another key=value term, or search by instance id."
)

_REFUSED = "hephaestus_search_refused"
"""Set on a request whose search was refused: its results are none, without a query."""
_BOUNDED = "hephaestus_search_bounded"
"""Set on a request whose statements run under the search's time limit."""


class SearchMixin:
    """The search of ``WorkflowInstanceAdmin`` (a ``ModelAdmin``)."""

    model: Any

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        view: Callable[..., HttpResponse] = super().changelist_view  # type: ignore[misc]
        query_string = request.META.get("QUERY_STRING", "")
        if len(query_string) > QUERY_MAX_CHARS:
            _refuse(
                request,
                f"Nothing was listed: the page's address is {len(query_string):,} characters "
                f"long after the “?”; the limit is {QUERY_MAX_CHARS:,}.",
            )
            # Parsed no further than the limit, for what the page echoes (the term cut short).
            request.GET = QueryDict(query_string[:QUERY_MAX_CHARS], mutable=True)
            request.GET[SEARCH_VAR] = request.GET.get(SEARCH_VAR, "")[:SEARCH_MAX_CHARS]
            return view(request, extra_context)
        term = request.GET.get(SEARCH_VAR, "")
        try:
            check_length(term, TERM, SEARCH_MAX_CHARS)
            check_characters(term, TERM)
        except InvalidQueryError as error:
            _refuse(request, f"Nothing was searched: {error}.")
            # What the search box and the page's links echo: bounded, and text Django accepts.
            request.GET = request.GET.copy()
            request.GET[SEARCH_VAR] = term[:SEARCH_MAX_CHARS].replace("\x00", "")
            return view(request, extra_context)
        if not term.strip():
            return view(request, extra_context)
        setattr(request, _BOUNDED, True)
        try:
            with statement_timeout(router.db_for_read(self.model), SEARCH_TIMEOUT_MS):
                response = view(request, extra_context)
                # The page's rows are read while the template renders: render in the limit.
                render = getattr(response, "render", None)
                if render is not None:
                    render()
            return response
        except DatabaseError as error:
            if not cancelled(error):
                raise
        setattr(request, _BOUNDED, False)
        _refuse(request, TIMED_OUT.format(limit=SEARCH_TIMEOUT_MS))
        return view(request, extra_context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Filter by the term (see :mod:`hephaestus_django.admin.search`); a term that cannot be
        searched lists nothing and says why in a message."""
        term = search_term.strip()
        if getattr(request, _REFUSED, False):
            return queryset.none(), False
        if not term:
            return queryset, False
        try:
            return queryset.filter(search_filter(term)), False
        except InvalidQueryError as error:
            _refuse(request, f"Nothing was searched: {error}.")
            return queryset.none(), False

    def get_paginator(
        self, request: HttpRequest, queryset: QuerySet[Any], per_page: int, *args: Any, **kw: Any
    ) -> Paginator:
        paginator: Paginator = super().get_paginator(  # type: ignore[misc]
            request, queryset, per_page, *args, **kw
        )
        paginator.count_may_run_out = getattr(request, _BOUNDED, False)  # type: ignore[attr-defined]
        return paginator


def _refuse(request: HttpRequest, message: str) -> None:
    setattr(request, _REFUSED, True)
    messages.error(request, message)
