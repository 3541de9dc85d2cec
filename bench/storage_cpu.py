"""Process CPU time per operation on ``DjangoStorage``: what the Python of a transition costs
where it is stored (issue 25).

``python -m bench.storage_cpu [N] [ROUNDS]`` creates the bench database (``$BENCH_DATABASE``,
as ``python -m bench`` does), then prints, for each operation, the median over ``ROUNDS``
rounds of ``N`` of the process's CPU microseconds per operation: ``start_then_wait`` and
``resume_to_next_wait`` (:class:`~bench.workflows.Approval`, as in section 3b), ``linear_3``
(:class:`~bench.workflows.Linear3` started and run to its end, as in section 3), all on the
``prepared`` alias, and ``floor_start``, the hand-written floor's start (the same statement with
a precomputed document).

CPU time, not wall time: the commits' waits are left out, and with them most of what a loaded
machine does to wall-clock ratios. Compare old and new code in alternating processes (two
worktrees, each with its own ``BENCH_DATABASE``), pair by pair, as for
:mod:`bench.transition_cpu`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from uuid import UUID

from bench import environment


def main(argv: list[str]) -> dict[str, float]:
    n = int(argv[0]) if argv else 300
    rounds = int(argv[1]) if len(argv) > 1 else 5
    url, _source = environment.server_url()
    conninfo = environment.recreate_database(url)
    environment.configure_django(conninfo)
    # Imported after django.setup(): they import the model and the storage.
    from bench import hot_paths
    from bench.environment import PREPARED
    from bench.workflows import Approval, Linear3, initial_context
    from hephaestus_django.runtime import LocalRunner
    from hephaestus_django.storage import DjangoStorage

    runner = LocalRunner()
    storage = DjangoStorage(using=PREPARED)
    storage.now()  # the clock's reading, at most once a minute, is no cost of an operation
    raw = environment.raw_connection(conninfo)
    documents = hot_paths.recorded()
    name = Approval.path()
    order_ids = iter(range(1, 100_000_000))
    waiting: list[UUID] = []

    def start() -> None:
        runner.start(Approval, initial_context(next(order_ids)), storage=storage)

    def resume() -> None:
        runner.resume(waiting.pop(), "approved", storage=storage)

    def linear() -> None:
        runner.start(Linear3, initial_context(next(order_ids)), storage=storage)

    def floor_start() -> None:
        hot_paths._floor_start(raw, name, documents["start"][-1])

    def prepare_resume(count: int) -> None:
        waiting[:] = [
            runner.start(Approval, initial_context(next(order_ids)), storage=storage).id
            for _ in range(count)
        ]

    operations: dict[str, tuple[Callable[[], None], Callable[[int], None] | None]] = {
        "start_then_wait": (start, None),
        "resume_to_next_wait": (resume, prepare_resume),
        "linear_3": (linear, None),
        "floor_start": (floor_start, None),
    }
    found: dict[str, list[float]] = {label: [] for label in operations}
    try:
        for _ in range(rounds + 1):  # the first round warms up
            for label, (operation, prepare) in operations.items():
                if prepare is not None:
                    prepare(n)
                began = time.process_time()
                for _ in range(n):
                    operation()
                found[label].append((time.process_time() - began) / n * 1e6)
    finally:
        runner.close()
        raw.close()
    return {label: statistics.median(values[1:]) for label, values in found.items()}


if __name__ == "__main__":
    for label, micros in main(sys.argv[1:]).items():
        print(f"{label} {micros:.0f}")
