"""Map workflows for the rewind tests: an invoice whose map can be rewound from inside an item.

``RUNS`` counts each item's runs (by its id); an item's result names the run that computed
it, so a test sees which run's results the map joined. ``REWIND_FROM`` names an instance whose
item 0 rewinds it to ``RewindLines`` on its first run (the rewind happens while the map's first
run is in flight: that run's later items are refused, and the map runs again).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from hephaestus_django import Done, Event, Map, MapItem, Step, Workflow
from hephaestus_django.core.instance import Context

RUNS: Counter[str] = Counter()
REWIND_FROM: dict[str, str] = {}
"""``{"id": <instance id>}``: the instance item 0 rewinds, once."""
_lock = threading.Lock()


def reset() -> None:
    with _lock:
        RUNS.clear()
        REWIND_FROM.clear()


class RewindLine(MapItem):
    def execute(self, item: Any, context: Context) -> Any:
        with _lock:
            RUNS[str(item["id"])] += 1
            run = RUNS[str(item["id"])]
            target = REWIND_FROM.pop("id", None) if item["id"] == 0 else None
        if target is not None:
            RewindInvoice.rewind(target, to=RewindLines)
        return {"line": item["id"], "run": run, "charged": item["amount"]}


class RewindLines(Map):
    each = RewindLine
    in_flight = 1  # one item after the other: the first run stops at the rewind

    def over(self, context: Context) -> Any:
        return context.initial["lines"]


class Sum(Step):
    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Context) -> Any:
        lines = context.result(RewindLines)
        return Event("ok", {"total": sum(line["charged"] for line in lines)})


class RewindInvoice(Workflow):
    """Charge every line, then sum them: rewound to the map, or to the sum."""

    start = RewindLines
    transitions = {RewindLines: {"completed": Sum}, Sum: {"ok": Done}}


def lines(count: int) -> list[dict[str, Any]]:
    return [{"id": index, "amount": index + 1} for index in range(count)]
