"""Item 11: map steps: what a map of 10, 1,000 and 10,000 items writes, per item.

``LocalRunner`` + ``DjangoStorage``, then ``QueuedRunner`` + ``DjangoStorage`` with each item a
job of its own (the in-memory dispatcher, its jobs run in this process as a worker runs them:
the job engine's own statements, one insert per item job with procrastinate, are not counted;
the peak RSS of this process, the worker, is). A workflow whose map charges each line of
``context.initial["lines"]`` (``in_flight = 10``; each item returns a 2-key dict), then ends.
Every statement of every connection (the runner's and the map's item threads') is counted
through an ``execute_wrapper`` installed on each connection as it is made, with the bytes of
data each write carries (its parameters: the state's JSON text, an item's result), split by the
table written: the instance's row (``workflow_instances``) and the items' rows
(``workflow_map_items``). A statement's ``BEGIN``/``COMMIT`` are not statements here.

What it shows: the instance's row is written a fixed number of times whatever the length of the
list (the start, and the join, which carries the list of results and the list itself, since
the items come from the initial context), and each item costs one write of its own size; so
the bytes and statements per item stay flat from 10 to 10,000 items. A write per item that
rewrote the state would carry the list each time: bytes per item growing with the list.
"""

from __future__ import annotations

import resource
import time
from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.backends.signals import connection_created

from bench.tally import Tally
from hephaestus_django import Done, Map, MapItem, Status, Workflow
from hephaestus_django.core.instance import Context
from hephaestus_django.runtime import InMemoryDispatcher, LocalRunner, configure
from hephaestus_django.runtime.queued import QueuedRunner
from hephaestus_django.storage import DjangoStorage

SIZES = (10, 1_000, 10_000)


class BenchLine(MapItem):
    def execute(self, item: Any, context: Context) -> Any:
        return {"line": item["id"], "cents": item["cents"]}


class BenchLines(Map):
    each = BenchLine
    in_flight = 10

    def over(self, context: Context) -> Any:
        return context.initial["lines"]


class BenchInvoice(Workflow):
    start = BenchLines
    transitions = {BenchLines: {"completed": Done}}


def measure(size: int, dispatcher: InMemoryDispatcher | None = None) -> dict[str, Any]:
    tally = Tally()

    def install(sender: Any, connection: Any, **kwargs: Any) -> None:
        connection.execute_wrappers.append(tally)

    connection_created.connect(install)
    connection.execute_wrappers.append(tally)
    lines = [{"id": index, "cents": 100 + index} for index in range(size)]
    clock = time.perf_counter()
    try:
        instance_id = BenchInvoice.start({"lines": lines})
        while dispatcher is not None and dispatcher.drain(limit=1_000):
            pass  # the map step's job, its item jobs, one after another
    finally:
        elapsed = time.perf_counter() - clock
        connection.execute_wrappers.remove(tally)
        connection_created.disconnect(install)
    instance = BenchInvoice.get(instance_id)
    assert instance.status is Status.COMPLETED, instance
    assert len(instance.context.result(BenchLines)) == size
    items = tally.writes.get("items", {"count": 0, "bytes": 0, "largest": 0})
    state = tally.writes.get("instance", {"count": 0, "bytes": 0, "largest": 0})
    renewals = tally.writes.get("renewals", {"count": 0})
    written = items["bytes"] + state["bytes"]
    return {
        "runner": "local" if dispatcher is None else "queued",
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "items": size,
        "statements": tally.statements,
        "statements_per_item": tally.statements / size,
        "item_writes": items["count"],
        "item_bytes_per_item": items["bytes"] / size,
        "largest_item_write": items["largest"],
        "instance_writes": state["count"],
        "lease_renewals": renewals["count"],
        "instance_bytes": state["bytes"],
        "largest_instance_write": state["largest"],
        "bytes_per_item": written / size,
        "seconds": elapsed,
    }


def run(sizes: tuple[int, ...] = SIZES) -> list[dict[str, Any]]:
    """Each size on ``QueuedRunner`` (item jobs) first, then on ``LocalRunner``: the peak RSS
    of the process is the item jobs' before the threads' runs can raise it."""
    found = []
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=60))
    configure(storages={"default": DjangoStorage()}, runner=runner)
    try:
        found += [measure(size, dispatcher) for size in sizes]
    finally:
        runner.close()
        configure()
    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    try:
        found += [measure(size) for size in sizes]
    finally:
        configure()
    return found


def lines(found: list[dict[str, Any]]) -> list[str]:
    """The markdown of item 11."""
    return [
        "DjangoStorage, `in_flight = 10`, each item's result a 2-key dict; QueuedRunner with "
        "each item a job (in-memory dispatcher, jobs run in this process: the engine's own "
        "insert per job not counted), then LocalRunner. Bytes: the data (parameters) of the "
        "writes; statements: every statement of every connection. The instance's writes carry "
        "the list itself (the items come from the initial context) and, at the join, the "
        "results; lease renewals (the heartbeat of a running item, a third of a lease apart, no "
        "state written) are counted apart. Peak RSS: this process's, after the run (the queued "
        "runs come first).",
        "",
        "| runner | items | statements | per item | item writes | bytes per item write | "
        "largest item write | instance writes (+ lease renewals) | instance bytes (largest) | "
        "bytes written per item | peak RSS MB | s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {run.get('runner', 'local')} | {run['items']:,} | {run['statements']:,} | "
            f"{run['statements_per_item']:.2f} | "
            f"{run['item_writes']:,} | {run['item_bytes_per_item']:.0f} | "
            f"{run['largest_item_write']:,} | {run['instance_writes']} "
            f"(+{run.get('lease_renewals', 0)}) | "
            f"{run['instance_bytes']:,} ({run['largest_instance_write']:,}) | "
            f"{run['bytes_per_item']:.0f} | {run.get('peak_rss_mb', 0):.0f} | "
            f"{run['seconds']:.2f} |"
            for run in found
        ],
    ]


def budget(found: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """A write per item bounded: bytes and statements per item at the largest size within
    1.5x of the smallest size's, and the instance written a fixed number of times, on each
    runner measured."""
    checks = []
    for runner in sorted({run.get("runner", "local") for run in found}):
        runs = [run for run in found if run.get("runner", "local") == runner]
        checks += [(f"{runner} {what}", shown, ok) for what, shown, ok in _budget(runs)]
    return checks


def _budget(found: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    first, last = found[0], found[-1]
    bytes_ratio = last["item_bytes_per_item"] / first["item_bytes_per_item"]
    statements_ratio = last["statements_per_item"] / first["statements_per_item"]
    return [
        (
            f"map: item bytes per item at {last['items']:,} ≤ 1.5x at {first['items']:,}",
            f"{bytes_ratio:.2f}x",
            bytes_ratio <= 1.5,
        ),
        (
            f"map: statements per item at {last['items']:,} ≤ 1.5x at {first['items']:,}",
            f"{statements_ratio:.2f}x",
            statements_ratio <= 1.5,
        ),
        (
            "map: instance writes independent of the list's length (the lease renewals of a "
            "run longer than half a lease apart: they write no state)",
            f"{first['instance_writes']} and {last['instance_writes']} (renewals: "
            f"{first.get('lease_renewals', 0)} and {last.get('lease_renewals', 0)})",
            first["instance_writes"] == last["instance_writes"],
        ),
    ]
