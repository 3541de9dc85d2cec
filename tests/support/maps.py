"""Map workflows more than one test module runs: a line per item, some failing on purpose.

Each item is ``{"id": ..., "amount": ..., "fail": N}``: the item raises on its first ``N``
attempts (``"always"``: on every one; ``"declined"``: an expected error). Every attempt is
counted in ``ATTEMPTS`` (by the item's id) and the items in flight in ``IN_FLIGHT``, whose
highest value is kept in ``PEAK``, so tests check the policy and the bound.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

from hephaestus_django import Done, Map, MapItem, Retry, Step, Workflow
from hephaestus_django.core.instance import Context

ATTEMPTS: Counter[str] = Counter()
_lock = threading.Lock()
_flight = {"now": 0, "peak": 0}


class Declined(Exception):
    """A business outcome: not retried."""


class LineFailed(RuntimeError):
    """An item told to fail."""


def reset() -> None:
    with _lock:
        ATTEMPTS.clear()
        _flight.update(now=0, peak=0)


def peak() -> int:
    return _flight["peak"]


class ChargeLine(MapItem):
    expected_errors = (Declined,)

    def execute(self, item: Any, context: Context) -> Any:
        with _lock:
            ATTEMPTS[str(item["id"])] += 1
            attempt = ATTEMPTS[str(item["id"])]
            _flight["now"] += 1
            _flight["peak"] = max(_flight["peak"], _flight["now"])
        try:
            time.sleep(float(item.get("sleep", 0)))
            fail = item.get("fail", 0)
            if fail == "declined":
                raise Declined(f"line {item['id']} declined")
            if fail == "always" or (isinstance(fail, int) and attempt <= fail):
                raise LineFailed(f"line {item['id']} failed at attempt {attempt}")
            return {"line": item["id"], "charged": item["amount"]}
        finally:
            with _lock:
                _flight["now"] -= 1


class ChargeLines(Map):
    each = ChargeLine
    in_flight = 3
    retry = Retry(max_attempts=3, backoff=timedelta(0), jitter=False)

    def over(self, context: Context) -> Any:
        return context.initial["lines"]


class Total(Step):
    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Context) -> Any:
        from hephaestus_django import Event

        lines = context.result(instance.workflow.graph.start)  # the map before it
        return Event("ok", {"total": sum(line["charged"] for line in lines)})


class Invoice(Workflow):
    """Charge every line of an invoice, then total them."""

    start = ChargeLines
    transitions = {ChargeLines: {"completed": Total}, Total: {"ok": Done}}


def lines(count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": index, "amount": index + 1, **extra} for index in range(count)]


class SlowLine(MapItem):
    def execute(self, item: Any, context: Context) -> Any:
        with _lock:
            ATTEMPTS[f"slow-{item}"] += 1
        time.sleep(1.0)
        return item


class SlowLines(Map):
    """Items that overrun their map's timeout."""

    each = SlowLine
    in_flight = 2
    timeout = timedelta(milliseconds=100)
    retry = Retry(max_attempts=2, backoff=timedelta(0), jitter=False)

    def over(self, context: Context) -> Any:
        return context.initial["lines"]


class NotAList(Map):
    each = ChargeLine

    def over(self, context: Context) -> Any:
        return {"lines": context.initial["lines"]}


class SlowInvoice(Workflow):
    start = SlowLines
    transitions = {SlowLines: {"completed": Done}}


class BadInvoice(Workflow):
    start = NotAList
    transitions = {NotAList: {"completed": Done}}


# --- maps of every policy and bound, for the properties --------------------------------------

PROPERTY_ATTEMPTS = (1, 2, 3)
PROPERTY_CONCURRENCY = (1, 2, 4)


def _property_workflow(attempts: int, concurrency: int) -> type[Workflow]:
    suffix = f"{attempts}x{concurrency}"
    mapped: Any = type(
        f"PropertyLines{suffix}",
        (Map,),
        {
            "__module__": __name__,
            "each": ChargeLine,
            "in_flight": concurrency,
            "retry": Retry(max_attempts=attempts, backoff=timedelta(0), jitter=False),
            "over": lambda self, context: context.initial["lines"],
        },
    )
    return type(
        f"PropertyInvoice{suffix}",
        (Workflow,),
        {
            "__module__": __name__,
            "start": mapped,
            "transitions": {mapped: {"completed": Total}, Total: {"ok": Done}},
        },
    )


PROPERTY_WORKFLOWS: dict[tuple[int, int], type[Workflow]] = {
    (attempts, concurrency): _property_workflow(attempts, concurrency)
    for attempts in PROPERTY_ATTEMPTS
    for concurrency in PROPERTY_CONCURRENCY
}
"""A workflow (a map of ``ChargeLine``, then ``Total``) per (max_attempts, concurrency)."""
