"""Issue 27: what a concurrency or rate limit costs a step, on ``DjangoStorage`` with
``LocalRunner``.

``python -m bench.flow_control [N]`` (uses ``$DATABASE_URL``'s server and the database
``$BENCH_DATABASE``, dropped and created afresh) starts N one-step instances of each of three
workflows, interleaved in slices: *free*, whose step declares no limit, *limited*, whose step
declares ``Concurrency(1_000_000)``, and *rated*, whose step declares
``RateLimit(1_000_000, per=timedelta(minutes=1))`` (never reached: every admission succeeds, so
what is measured is the admission and the release themselves, not waiting). Per instance it
reports the statements sent (Django's query log, transaction control included; the limit's lock
and the operation after it are sent as one query) and the median and p90 latency of ``start``
(which runs the step to its end). The difference is the price of a limit per step execution.

:func:`throughput` (item 8f of ``python -m bench``, with the queued runner's worker processes):
8 procrastinate workers run one-step instances whose step sleeps 50 ms under
``Concurrency(4)``. The limit's ideal is 4 / 0.05 s = 80 steps a second (every slot always
busy); the figure is the achieved rate over that ideal, from the commit of the starts (all in
one transaction: 4 jobs enqueued, the rest waiting in line) to the last instance completed.
Interleaved with it, the baseline: the same step without a limit on 4 workers (the same ideal),
so the ratio of the two is what the limit's hand-offs cost, apart from the machine's load.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from hephaestus_django import Concurrency, Done, RateLimit, Step, Workflow

if TYPE_CHECKING:
    from bench.queued.run import Queued

SLICE = 50
THROUGHPUT_LIMIT = 4
THROUGHPUT_WORKERS = 8
THROUGHPUT_SLEEP_S = 0.05


class FreeStep(Step):
    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> str:
        return "ok"


class LimitedStep(Step):
    events = ("ok",)
    concurrency = Concurrency(1_000_000, name="bench-limit")

    def execute(self, instance: Any, config: Any, context: Any) -> str:
        return "ok"


class RatedStep(Step):
    events = ("ok",)
    rate_limit = RateLimit(1_000_000, per=timedelta(minutes=1), name="bench-rate")

    def execute(self, instance: Any, config: Any, context: Any) -> str:
        return "ok"


class Free(Workflow):
    start_step = FreeStep
    transitions = {FreeStep: {"ok": Done}}


class Limited(Workflow):
    start_step = LimitedStep
    transitions = {LimitedStep: {"ok": Done}}


class Rated(Workflow):
    start_step = RatedStep
    transitions = {RatedStep: {"ok": Done}}


def measure(n: int) -> dict[str, dict[str, float]]:
    from django.db import connection

    from hephaestus_django.runtime import LocalRunner, configure
    from hephaestus_django.storage import DjangoStorage

    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    flows = {"free": Free, "limited": Limited, "rated": Rated}
    latencies: dict[str, list[int]] = {name: [] for name in flows}
    statements: dict[str, int] = dict.fromkeys(flows, 0)
    for flow in flows.values():  # warm-up
        for _ in range(SLICE):
            flow.start({})
    connection.force_debug_cursor = True
    done = 0
    while done < n:
        for name, flow in flows.items() if done % (2 * SLICE) == 0 else reversed(flows.items()):
            for _ in range(SLICE):
                connection.queries_log.clear()
                start = time.perf_counter_ns()
                flow.start({})
                latencies[name].append(time.perf_counter_ns() - start)
                statements[name] += len(connection.queries_log)
        done += SLICE
    connection.force_debug_cursor = False
    return {
        name: {
            "statements": statements[name] / len(found),
            "median_us": statistics.median(found) / 1000,
            "p90_us": statistics.quantiles(found, n=10)[-1] / 1000,
        }
        for name, found in latencies.items()
    }


def throughput(queued: Queued, *, rounds: int, n: int) -> dict[str, Any]:
    """``n`` instances through a limit of 4 with 8 workers, ``rounds`` times; the achieved
    rate over the limit's ideal (each round with workers started afresh)."""
    from bench.measure import spread
    from bench.queued.run import log
    from bench.queued.workflows import Limited1, Unlimited1

    ideal = THROUGHPUT_LIMIT / THROUGHPUT_SLEEP_S
    sides = {
        "limited": (Limited1, THROUGHPUT_WORKERS),
        "unlimited": (Unlimited1, THROUGHPUT_LIMIT),
    }
    rates: dict[str, list[float]] = {side: [] for side in sides}
    ratios, against = [], []
    for round_no in range(rounds):
        order = list(sides) if round_no % 2 == 0 else list(sides)[::-1]
        for side in order:
            workflow, workers = sides[side]
            queued.reset()
            queued.monitor.execute("TRUNCATE hephaestus_slots")
            queued.start_workers(workers)
            try:
                elapsed = queued.batch("ours", n, workflow, {"sleep": THROUGHPUT_SLEEP_S})
            finally:
                queued.stop_workers()
            rates[side].append(n / elapsed)
        ratios.append(rates["limited"][-1] / ideal)
        against.append(rates["limited"][-1] / rates["unlimited"][-1])
        log(
            f"flow-control throughput round {round_no + 1}: {rates['limited'][-1]:.1f} steps/s "
            f"at the limit ({ratios[-1]:.2f} of the ideal {ideal:.0f}/s); "
            f"{rates['unlimited'][-1]:.1f} steps/s unlimited on {THROUGHPUT_LIMIT} workers"
        )
    return {
        "limit": THROUGHPUT_LIMIT,
        "workers": THROUGHPUT_WORKERS,
        "step_sleep_s": THROUGHPUT_SLEEP_S,
        "instances": n,
        "rounds": rounds,
        "ideal_steps_per_s": ideal,
        "steps_per_s": spread(rates["limited"]),
        "ratio": spread(ratios),
        "ratios": ratios,
        "unlimited_steps_per_s": spread(rates["unlimited"]),
        "ratio_to_unlimited": spread(against),
    }


def lines(found: dict[str, dict[str, float]], n: int) -> list[str]:
    """The markdown of the flow-control section: a row per kind of step, and what a limit
    costs over the free step."""
    free = found["free"]
    return [
        f"{n} starts per kind, one step each (LocalRunner, DjangoStorage), interleaved in slices "
        f"of {SLICE}; statements: Django's query log (transaction control included; a limit's "
        "lock and its operation are one query). Limits never reached: the admission and the "
        "release themselves.",
        "",
        "| step | statements per instance | median µs | p90 µs | over free: statements | µs |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {name} | {row['statements']:.1f} | {row['median_us']:.0f} | "
            f"{row['p90_us']:.0f} | {row['statements'] - free['statements']:+.1f} | "
            f"{row['median_us'] - free['median_us']:+.0f} |"
            for name, row in found.items()
        ],
    ]


def run(n: int) -> dict[str, Any]:
    """The section of ``python -m bench`` (the database already made and configured)."""
    # Through the module's import: run as ``python -m``, this file is ``__main__``, whose
    # workflows no other process could import (the storage refuses them).
    from bench.flow_control import measure as measured

    return {"n": n, "kinds": measured(n)}


def main(argv: list[str]) -> int:
    from bench import environment

    n = int(argv[0]) if argv else 1000
    url, _source = environment.server_url()
    environment.configure_django(environment.recreate_database(url))
    found = run(n)
    print("\n".join(lines(found["kinds"], n)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
