"""CPU time per 3-step workflow in process: what a transition costs in Python (issue 25).

``python -m bench.transition_cpu MODE [N] [ROUNDS]`` prints the median, over ``ROUNDS`` rounds
of ``N`` starts, of the process's CPU microseconds per :class:`~bench.workflows.Linear3` run to
completion by ``LocalRunner`` on ``InMemoryStorage``, with Django's app ready (tests.settings:
the signals' listener added, the telemetry installed as a project gets them). ``MODE``: ``api``
(``opentelemetry-api``'s own providers, as with the API alone), ``off`` (telemetry uninstalled),
``sdk`` (the SDK's tracer and meter providers, no exporter), ``signals`` (a receiver connected).

CPU time, not wall time, and one process per figure: run the old and the new code in
alternating processes (two worktrees) and compare the ratios of each pair, as the performance
page does; no database is involved.
"""

from __future__ import annotations

import os
import statistics
import sys
import time


def main(argv: list[str]) -> float:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from bench.workflows import Linear3, initial_context
    from hephaestus_django import signals, telemetry
    from hephaestus_django.runtime import InMemoryStorage, LocalRunner

    mode = argv[0] if argv else "api"
    n = int(argv[1]) if len(argv) > 1 else 200
    rounds = int(argv[2]) if len(argv) > 2 else 5
    if mode == "off":
        telemetry.uninstall()
    elif mode == "sdk":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        telemetry.install(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    elif mode == "signals":
        signals.step_completed.connect(_receiver, weak=False)
    elif mode != "api":
        raise SystemExit(f"unknown mode {mode!r}: api, off, sdk or signals")
    context = initial_context(1)
    storage = InMemoryStorage()
    runner = LocalRunner()

    def one_round() -> float:
        started = time.process_time()
        for _ in range(n):
            runner.start(Linear3, context, storage=storage)
        return (time.process_time() - started) / n * 1e6

    one_round()  # warm-up
    return statistics.median(one_round() for _ in range(rounds))


def _receiver(**kwargs: object) -> None:
    pass


if __name__ == "__main__":
    print(f"{main(sys.argv[1:]):.0f}")
