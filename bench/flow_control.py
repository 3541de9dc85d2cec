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
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from typing import Any

from hephaestus_django import Concurrency, Done, RateLimit, Step, Workflow

SLICE = 50


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
