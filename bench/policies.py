"""Item 9: what the step policies cost per step, in statements and time.

``LocalRunner`` + ``DjangoStorage`` on the ``default`` alias; every step does nothing, so what is
measured is what a policy adds to the engine, the codec and the storage. Each case is timed
``n`` times (median and spread, microseconds) and its statements counted once with Django's
``CaptureQueriesContext`` (what Django logs: a transaction's ``BEGIN`` and ``COMMIT`` are in
it). The steps' failures are logged by the runner as in production; the log is silenced here.

- *plain*: a one-step workflow started and run to its end, the baseline.
- *timeout*: the same step with a ``timeout``: it runs on a thread of its own, bounded.
- *failed attempt*: the same step failing its first attempt under ``Retry(backoff=0)``: the
  start that records the failure and its retry timer, plus the worker pass that fires the
  timer and runs the second attempt; the cost of one failed attempt is that minus *plain*.
  The worker pass claims whatever is due, so nothing else may be: the section checks that no
  earlier section left an instance a pass would take over (:func:`bench.leftovers.ensure_none`)
  and fails, naming them, if one did.
- *cancel*: ``Workflow.cancel`` of an instance waiting for an event.
- *compensation*: ``cancel(compensate=True)`` of an instance waiting after three completed
  compensable steps; per compensated step, that minus *cancel*, divided by three.
- *signal receiver*: *plain* with a receiver (that does nothing) connected to every one of the
  nine signals of ``hephaestus_django.signals``; *plain* itself has the app's listener but no
  receiver, which is what a project that uses no signal pays.
- *tracing, API only*: *plain* traced through ``opentelemetry-api`` without an SDK (what a
  project with the package but no SDK configured pays); *tracing, SDK*: with the SDK's
  ``TracerProvider`` (a ``SimpleSpanProcessor`` into an ``InMemorySpanExporter``) and
  ``MeterProvider`` (an ``InMemoryMetricReader``): two spans (the start, the step) and the
  counters and histogram per run. *plain* and the other cases run with telemetry off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.leftovers import ensure_none
from bench.measure import spread
from hephaestus_django import Done, Retry, Step, WaitForEvent, Workflow, signals, telemetry
from hephaestus_django.core.instance import Context, Instance
from hephaestus_django.runtime import LocalRunner, configure
from hephaestus_django.storage import DjangoStorage

_FAILED_FIRST: set[UUID] = set()
"""Instances whose first attempt has failed already."""


class Nothing(Step):
    """Completes at once."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        return "ok"


class Bounded(Nothing):
    """Completes at once, within its timeout."""

    timeout = timedelta(seconds=30)


class FailsOnce(Step):
    """Fails its first attempt, then completes; retried at once."""

    events = ("ok",)
    retry = Retry(max_attempts=2, backoff=timedelta(0), jitter=False)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        if instance.id not in _FAILED_FIRST:
            _FAILED_FIRST.add(instance.id)
            raise ConnectionError("the first attempt fails")
        return "ok"


class Undoable(Step):
    """Completes at once; its compensation does nothing."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        return "ok"

    def compensate(self, instance: Instance, config: Mapping[str, Any], context: Context) -> None:
        return None


class UndoA(Undoable):
    pass


class UndoB(Undoable):
    pass


class UndoC(Undoable):
    pass


class Hold(WaitForEvent):
    events = ("go",)


class Plain(Workflow):
    start_step = Nothing
    transitions = {Nothing: {"ok": Done}}


class Timed(Workflow):
    start_step = Bounded
    transitions = {Bounded: {"ok": Done}}


class RetriedOnce(Workflow):
    start_step = FailsOnce
    transitions = {FailsOnce: {"ok": Done}}


class Held(Workflow):
    start_step = Hold
    transitions = {Hold: {"go": Done}}


class Undoable3(Workflow):
    start_step = UndoA
    transitions = {
        UndoA: {"ok": UndoB},
        UndoB: {"ok": UndoC},
        UndoC: {"ok": Hold},
        Hold: {"go": Done},
    }


def _case(
    prepare: Callable[[], Any], action: Callable[[Any], Any], n: int
) -> tuple[int, dict[str, float]]:
    """Statements of one ``action`` (on what ``prepare`` made), and its time over ``n`` runs.

    One warm-up run first, so that no count includes the storage's read of the database's
    clock (once a minute) or a first connection.
    """
    action(prepare())
    subject = prepare()
    with CaptureQueriesContext(connection) as captured:
        action(subject)
    statements = len(captured.captured_queries)
    samples = []
    for _ in range(n):
        subject = prepare()
        start = time.perf_counter_ns()
        action(subject)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statements, spread(samples)


SIGNALS = (
    "instance_started",
    "instance_waiting",
    "instance_resumed",
    "instance_completed",
    "instance_failed",
    "instance_cancelled",
    "step_completed",
    "step_failed",
    "step_retried",
)


def _receiver(sender: object, **kwargs: Any) -> None:
    """A receiver that does nothing: what is measured is the sending."""


def _with_receivers(n: int) -> tuple[int, dict[str, float]]:
    connected = [getattr(signals, name) for name in SIGNALS]
    for signal in connected:
        signal.connect(_receiver, weak=False)
    try:
        return _case(lambda: None, lambda _: Plain.start({}), n)
    finally:
        for signal in connected:
            signal.disconnect(_receiver)


def _traced(n: int, *, sdk: bool) -> tuple[int, dict[str, float]]:
    if not sdk:
        telemetry.install()
    else:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        telemetry.install(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        return _case(lambda: None, lambda _: Plain.start({}), n)
    finally:
        telemetry.uninstall()


def run(raw: psycopg.Connection[Any], *, n: int) -> dict[str, Any]:
    """Every case, ``n`` times each; ``raw`` checks that no earlier section left work for the
    failed attempt's worker pass."""
    storage = DjangoStorage()
    runner = LocalRunner()
    configure(storages={"default": storage}, runner=runner)
    quiet = logging.getLogger("hephaestus_django")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    traced = telemetry.installed()
    telemetry.uninstall()  # the baseline runs untraced; the tracing cases install their own
    try:

        def failing_then_worked(_: None) -> None:
            RetriedOnce.start({})
            runner.work(storage=storage)

        cases = {
            "plain": _case(lambda: None, lambda _: Plain.start({}), n),
            "timeout": _case(lambda: None, lambda _: Timed.start({}), n),
        }
        ensure_none(raw, "section 9, the failed attempt retried by a worker pass")
        cases |= {
            "failed_attempt": _case(lambda: None, failing_then_worked, n),
            "cancel": _case(lambda: Held.start({}), Held.cancel, n),
            "compensation": _case(
                lambda: Undoable3.start({}),
                lambda instance_id: Undoable3.cancel(instance_id, compensate=True),
                n,
            ),
            "signal_receiver": _with_receivers(n),
        }
        if telemetry.available():
            cases["tracing_api"] = _traced(n, sdk=False)
            cases["tracing_sdk"] = _traced(n, sdk=True)
    finally:
        if traced:
            telemetry.install()
        quiet.setLevel(level)
        runner.close()
        configure()
    found: dict[str, Any] = {
        name: {"statements": statements, "us": timing}
        for name, (statements, timing) in cases.items()
    }
    plain, failed = found["plain"], found["failed_attempt"]
    cancel, compensation = found["cancel"], found["compensation"]
    found["per_timed_step"] = {
        "statements": found["timeout"]["statements"] - plain["statements"],
        "us": found["timeout"]["us"]["median"] - plain["us"]["median"],
    }
    found["per_failed_attempt"] = {
        "statements": failed["statements"] - plain["statements"],
        "us": failed["us"]["median"] - plain["us"]["median"],
    }
    for case in ("signal_receiver", "tracing_api", "tracing_sdk"):
        if case in found:
            found[f"per_step_{case}"] = {
                "statements": found[case]["statements"] - plain["statements"],
                "us": found[case]["us"]["median"] - plain["us"]["median"],
            }
    found["per_compensated_step"] = {
        "statements": (compensation["statements"] - cancel["statements"]) / 3,
        "us": (compensation["us"]["median"] - cancel["us"]["median"]) / 3,
    }
    return found
