"""Picking the step of a rewind or a fork on the graph: no JavaScript, links.

The Rewind and Fork pages draw the instance's graph; the box of each step the operator can go
back to is a link to the same page with ``?step=<dotted path>``. The page then renders with that
step chosen in the form (which still posts as before) and states what choosing it would forget,
from the dry run: the steps, the map items and the children the rewind cancels.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest
from django.utils.safestring import SafeString, mark_safe

from hephaestus_django.admin.forms import in_order
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.rewind import RewindPlan
from hephaestus_django.diagram import build_diagram, progress_of, render_svg
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.execution import dry_run_plan

STEP_PARAMETER = "step"
"""The GET parameter that names the step picked on the graph (its dotted path)."""


def picked(request: HttpRequest, plans: list[RewindPlan]) -> RewindPlan | None:
    """The plan of the step the GET parameter picks, if it is one the page offers."""
    path = request.GET.get(STEP_PARAMETER)
    return next((found for found in plans if found.to.path() == path), None)


def graph(instance: Instance, plans: list[RewindPlan], chosen: RewindPlan | None) -> SafeString:
    """The instance's graph whose offered steps link to the page with that step picked."""
    links = {found.to: "?" + urlencode({STEP_PARAMETER: found.to.path()}) for found in plans}
    notes = {chosen.to: "picked"} if chosen is not None else {}
    progress = progress_of(instance)
    progress = dataclasses.replace(
        progress, links={**progress.links, **links}, notes={**progress.notes, **notes}
    )
    # Safe: render_svg escapes every text it writes.
    return mark_safe(render_svg(build_diagram(instance.workflow.graph), progress))


def picked_facts(
    chosen: RewindPlan, storage: Storage | None, verb: str, instance: Instance
) -> list[tuple[str, Any]]:
    """What the page states about the picked step, from the dry run (what the storage holds
    outside the instance read too, on a rewind)."""
    found = chosen
    if storage is not None and verb == "rewound":
        found = dry_run_plan(chosen, storage, instance)
    rows: list[tuple[str, Any]] = [
        ("Picked", chosen.to.__name__),
        ("Forgotten", ", ".join(s.__name__ for s in found.forgotten) or "nothing"),
        ("Then run", ", ".join(s.__name__ for s in found.active)),
    ]
    if found.compensations:
        rows.append(("Compensations if ticked", in_order(found.compensations)))
    if verb == "rewound":
        for step in found.maps:
            count = found.map_items.get(step, 0)
            rows.append((f"Map {step.__name__}", f"{count} item(s) forgotten; all run again"))
        if found.children:
            cancelled = set(found.cancelled_children)
            for child in found.children:
                fate = "cancelled" if child in cancelled else "ended: left as it is"
                rows.append(("Child", f"{child} ({fate}); a new child is started"))
    return rows
