"""Item 12: child workflows: the latency from a child's end to its parent's next step starting.

Each round starts a parent whose child waits for an event (``Shipment``: pack, then wait for the
courier), then ends the child with ``resume`` and times from that call to the first line of the
parent's next step (``Bill.execute``): the child's end, the parent's wake-up in the same
transaction, the commit, and the parent's runner taking the step. Measured on ``LocalRunner``
with ``DjangoStorage`` and, alongside in the same rounds (alternating, so that both see the same
load), with ``InMemoryStorage``: median and p95 over every round's samples. Where procrastinate
is installed, the same on ``QueuedRunner`` with one worker process
(:func:`bench.queued.run.run_children`): from the commit of the child's end to the parent's next
step starting on the worker.

Inside ``python -m bench`` (``--only children`` runs it alone, on the bench database). Standalone,
``python -m bench.child_latency`` measures ``InMemoryStorage`` only (no database).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from hephaestus_django import Child, Done, Event, Status, Step, WaitForEvent, Workflow
from hephaestus_django.core.instance import Context, Instance
from hephaestus_django.runtime import InMemoryStorage, LocalRunner, configure
from hephaestus_django.runtime.contract import Storage

ROUNDS = 5
PER_ROUND = 100

_started: list[float] = []
"""When each ``Bill.execute`` began (``time.perf_counter``), in this process."""


class Pack(Step):
    events = ("packed",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        return Event("packed", updates={"parcel": f"parcel-{context.initial['order']}"})


class AwaitCourier(WaitForEvent):
    events = ("picked_up",)


class Shipment(Workflow):
    start = Pack
    transitions = {Pack: {"packed": AwaitCourier}, AwaitCourier: {"picked_up": Done}}


class Ship(Child):
    workflow = Shipment

    def child_context(self, instance: Instance, context: Context) -> Mapping[str, Any]:
        return {"order": context.initial["order"]}


class Bill(Step):
    """The parent's next step: notes when it began."""

    events = ("billed",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Event:
        _started.append(time.perf_counter())
        return Event("billed")


class Settled(Done):
    pass


class Order(Workflow):
    start = Ship
    transitions = {
        Ship: {"completed": Bill, "failed": Settled, "cancelled": Settled},
        Bill: {"billed": Settled},
    }


def sample(order: int) -> float:
    """One latency, in seconds, on the configured storage and runner."""
    parent = Order.start({"order": order})
    child = Order.get(parent).children["ship"]
    _started.clear()
    began = time.perf_counter()
    Shipment.resume(child, "picked_up")
    latency = _started[0] - began
    assert Order.get(parent).status is Status.COMPLETED
    return latency


def measure(
    storages: Mapping[str, Callable[[], Storage]], rounds: int = ROUNDS, per_round: int = PER_ROUND
) -> dict[str, Any]:
    """Median and p95 (ms) per storage, the storages alternating within every round."""
    samples: dict[str, list[float]] = {name: [] for name in storages}
    medians: dict[str, list[float]] = {name: [] for name in storages}
    order = 0
    for _round in range(rounds):
        for name, make in storages.items():
            configure(storages={"default": make()}, runner=LocalRunner())
            try:
                found = []
                for _ in range(per_round):
                    order += 1
                    found.append(sample(order))
            finally:
                configure()
            samples[name] += found
            medians[name].append(statistics.median(found))
    return {
        "rounds": rounds,
        "per_round": per_round,
        "storages": {
            name: {
                "median_ms": statistics.median(found) * 1e3,
                "p95_ms": _p95(found) * 1e3,
                "round_medians_ms": [value * 1e3 for value in medians[name]],
            }
            for name, found in samples.items()
        },
    }


def _p95(found: list[float]) -> float:
    ordered = sorted(found)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def run(rounds: int = ROUNDS, per_round: int = PER_ROUND) -> dict[str, Any]:
    """Item 12 inside ``python -m bench`` (Django configured on the bench database)."""
    from hephaestus_django.storage import DjangoStorage

    return measure(
        {"DjangoStorage": DjangoStorage, "InMemoryStorage": InMemoryStorage}, rounds, per_round
    )


def lines(found: dict[str, Any]) -> list[str]:
    """The markdown of item 12."""
    return [
        "From `resume` of the child's last waiting step to the first line of the parent's next "
        "step, `LocalRunner` (the child's end and the parent's wake commit together, then the "
        f"parent's step runs in the caller's process); {found['rounds']} rounds of "
        f"{found['per_round']} parents, the storages alternating within each round.",
        "",
        "| storage | median ms | p95 ms | round medians ms |",
        "|---|---:|---:|---|",
        *[
            f"| {name} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | "
            f"{', '.join(f'{value:.2f}' for value in row['round_medians_ms'])} |"
            for name, row in found["storages"].items()
        ],
        *_queued_lines(found.get("queued")),
    ]


def _queued_lines(queued: dict[str, Any] | None) -> list[str]:
    if queued is None:
        return []
    ms = queued["ms"]
    return [
        "",
        "`QueuedRunner` + procrastinate, `DjangoStorage`, one idle worker process: from the "
        "commit of the child's end (which wakes the parent and enqueues its next step in the "
        f"same transaction) to that step's first line on the worker, {queued['samples']} "
        f"samples: median {ms['p50']:.2f} ms, p95 {ms['p95']:.2f} ms (p99 {ms['p99']:.2f}, "
        f"max {ms['max']:.2f}).",
    ]


def main() -> None:
    found = measure({"InMemoryStorage": InMemoryStorage})
    print("\n".join(lines(found)))


if __name__ == "__main__":
    main()
