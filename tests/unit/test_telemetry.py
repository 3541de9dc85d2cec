"""OpenTelemetry (``hephaestus_django.telemetry``) with the SDK's in-memory exporters.

Spans and their parents for both runners (a ``QueuedRunner`` job run as in another process:
its payload through JSON, in an empty context), the metrics' values, and nothing at all when
``opentelemetry`` cannot be imported.
"""

from __future__ import annotations

import contextvars
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from hephaestus_django import Status, telemetry
from hephaestus_django.core import engine
from hephaestus_django.core.instance import evolve
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
    tracing,
)
from hephaestus_django.runtime.dispatch import StepJob, job_from_payload
from hephaestus_django.runtime.queued import receive
from tests import flows
from tests.support.flow_control import GATE, Limited, LimitedFlow
from tests.timers import Clock, make_due

ONE = UUID(int=1)


class Otel:
    """The SDK's in-memory span exporter and metric reader, installed for one test."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        [found] = [span for span in self.spans() if span.name == name]
        return found

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def count(self, name: str, **attributes: object) -> int:
        wanted = {f"hephaestus.{key}": value for key, value in attributes.items()}
        return sum(
            point.value
            for point in self.points(name)
            if wanted.items() <= dict(point.attributes).items()
        )


@pytest.fixture
def otel() -> Iterator[Otel]:
    was = telemetry.installed()
    found = Otel()
    assert telemetry.install(
        tracer_provider=found.tracer_provider, meter_provider=found.meter_provider
    )
    yield found
    telemetry.uninstall()
    if was:
        telemetry.install()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def storage(clock: Clock) -> Iterator[InMemoryStorage]:
    storage = InMemoryStorage(clock=clock)
    runner = LocalRunner(lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield storage
    runner.close()
    configure()


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def test_a_start_is_the_parent_of_the_three_steps_it_ran(
    otel: Otel, storage: InMemoryStorage
) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    start = otel.span("hephaestus.start IfElse")
    steps = [otel.span(f"hephaestus.step {name}") for name in ("Check", "Approve", "Merge")]
    assert len(otel.spans()) == 4  # Done does nothing: no span
    assert start.parent is None
    for step in steps:
        assert parent_of(step) == start.context.span_id
        assert step.context.trace_id == start.context.trace_id
    assert start.attributes is not None
    assert dict(start.attributes) == {
        "hephaestus.workflow": flows.IfElse.path(),
        "hephaestus.transition": "start",
        "hephaestus.instance_id": str(instance_id),
        "hephaestus.workflow_version": 1,
        "hephaestus.status": "completed",
    }
    assert steps[0].attributes is not None
    assert dict(steps[0].attributes) == {
        "hephaestus.instance_id": str(instance_id),
        "hephaestus.workflow": flows.IfElse.path(),
        "hephaestus.workflow_version": 1,
        "hephaestus.step": flows.Check.path(),
        "hephaestus.attempt": 1,
        "hephaestus.compensation": False,
        "hephaestus.outcome": "event",
        "hephaestus.event": "valid",
    }


def test_the_branches_of_a_fan_out_on_pool_threads_are_children_too(
    otel: Otel, storage: InMemoryStorage
) -> None:
    flows.FanOut.start({"script": {}})
    start = otel.span("hephaestus.start FanOut")
    steps = [span for span in otel.spans() if span.name.startswith("hephaestus.step")]
    assert len(steps) == 5  # Split, three branches (on threads), Join
    assert all(parent_of(step) == start.context.span_id for step in steps)


def test_a_resume_is_the_parent_of_what_it_ran(otel: Otel, storage: InMemoryStorage) -> None:
    instance_id = flows.TwoWaits.start({"script": {}})
    flows.TwoWaits.resume(instance_id, "paid")
    otel.exporter.clear()
    flows.TwoWaits.resume(instance_id, "signed")
    resume = otel.span("hephaestus.resume TwoWaits")
    assert resume.attributes is not None
    assert resume.attributes["hephaestus.event"] == "signed"
    assert resume.attributes["hephaestus.instance_id"] == str(instance_id)
    for name in ("Join", "Finish"):
        assert parent_of(otel.span(f"hephaestus.step {name}")) == resume.context.span_id


def test_a_failed_step_records_its_error(otel: Otel, storage: InMemoryStorage) -> None:
    flows.IfElse.start({"script": {"check": "fail"}})
    step = otel.span("hephaestus.step Check")
    assert step.status.status_code is StatusCode.ERROR
    assert step.attributes is not None
    assert step.attributes["hephaestus.outcome"] == "error"
    [exception] = step.events
    assert exception.name == "exception"
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "tests.flows.StepFailed"


def test_a_queued_job_in_another_process_continues_the_trace(otel: Otel, clock: Clock) -> None:
    storage = InMemoryStorage(clock=clock)
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher)
    configure(storages={"default": storage}, runner=runner)
    try:
        flows.IfElse.start({"script": {}})
        start = otel.span("hephaestus.start IfElse")
        for _ in range(3):  # Check, Approve, Merge: each job enqueues the next
            [job] = dispatcher.take()
            text = json.dumps(job.payload())  # what travels through the job engine
            assert json.loads(text)["traceparent"].startswith("00-")
            # Another process: an empty context, the payload read back from JSON.
            contextvars.Context().run(receive, json.loads(text))
    finally:
        runner.close()
        configure()
    steps = [otel.span(f"hephaestus.step {name}") for name in ("Check", "Approve", "Merge")]
    for step in steps:
        assert step.context.trace_id == start.context.trace_id
        assert parent_of(step) == start.context.span_id
        assert step.parent is not None
        assert step.parent.is_remote


def test_a_payload_without_a_trace_or_with_a_bad_one_still_runs() -> None:
    job = job_from_payload(
        {"kind": "step", "storage": "default", "instance": str(ONE), "step": "a.B"}
    )
    assert job.trace is None
    assert "traceparent" not in job.payload()
    odd = job_from_payload({**job.payload(), "traceparent": 7, "tracestate": "x" * 600})
    assert odd.trace is None
    assert odd == job == StepJob("default", ONE, "a.B", trace={"traceparent": "t"})


def test_the_counters_and_the_step_durations(otel: Otel, storage: InMemoryStorage) -> None:
    flows.IfElse.start({"script": {}})
    flows.IfElse.start({"script": {}})
    flows.IfElse.start({"script": {"check": "fail"}})
    instance_id = flows.Saga.start({"script": {}})
    flows.Saga.cancel(instance_id)
    counters = {
        name: otel.count(f"hephaestus.instances.{name}", workflow=flows.IfElse.path())
        for name in ("started", "completed", "failed")
    }
    assert counters == {"started": 3, "completed": 2, "failed": 1}
    assert otel.count("hephaestus.instances.cancelled", workflow=flows.Saga.path()) == 1
    durations = {
        (point.attributes["hephaestus.step"], point.attributes["hephaestus.outcome"]): point.count
        for point in otel.points("hephaestus.step.duration")
        if point.attributes["hephaestus.workflow"] == flows.IfElse.path()
    }
    assert durations == {
        (flows.Check.path(), "event"): 2,
        (flows.Check.path(), "error"): 1,
        (flows.Approve.path(), "event"): 2,
        (flows.Merge.path(), "event"): 2,
    }


def test_a_timers_lag_and_its_span(otel: Otel, storage: InMemoryStorage) -> None:
    instance_id = flows.Timed.start({"script": {}})
    make_due(storage, instance_id, ago=timedelta(seconds=5))
    LocalRunner().work(storage=storage)
    assert flows.Timed.get(instance_id).status is Status.COMPLETED
    [lag] = otel.points("hephaestus.timer.lag")
    assert (lag.count, lag.sum) == (1, 5.0)
    assert dict(lag.attributes) == {
        "hephaestus.workflow": flows.Timed.path(),
        "hephaestus.retry": False,
    }
    timer = otel.span("hephaestus.timer Timed")
    assert timer.attributes is not None
    assert timer.attributes["hephaestus.instance_id"] == str(instance_id)


def test_a_stalled_instance_taken_over(otel: Otel, storage: InMemoryStorage, clock: Clock) -> None:
    """A runner died with Check to run: its lease lapses, a worker takes the instance over."""
    started = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    lapsed = clock.now - timedelta(seconds=1)
    storage.put(evolve(started, lease_owner="dead", lease_expires_at=lapsed))
    LocalRunner().work(storage=storage)
    assert otel.count("hephaestus.instances.stalled", workflow=flows.IfElse.path()) == 1
    recover = otel.span("hephaestus.recover IfElse")
    assert parent_of(otel.span("hephaestus.step Check")) == recover.context.span_id


def test_nothing_happens_without_opentelemetry(
    monkeypatch: pytest.MonkeyPatch, storage: InMemoryStorage
) -> None:
    was = telemetry.installed()
    telemetry.uninstall()
    try:
        for name in [name for name in sys.modules if name.split(".")[0] == "opentelemetry"]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, "opentelemetry", None)
        assert not telemetry.available()
        assert telemetry.install() is False
        assert tracing.installed() is None
        instance_id = flows.IfElse.start({"script": {}})
        assert flows.IfElse.get(instance_id).status is Status.COMPLETED
    finally:
        monkeypatch.undo()
        if was:
            telemetry.install()


def test_with_no_sdk_configured_no_span_is_made_and_no_event_computed(
    monkeypatch: pytest.MonkeyPatch, storage: InMemoryStorage
) -> None:
    """The API's no-op providers (as with ``opentelemetry-api`` alone): the runners skip every
    span and the metrics' events, and the workflow runs as before."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from hephaestus_django.runtime import events

    was = telemetry.installed()
    telemetry.install(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    try:

        def forbidden(*args: object, **kwargs: object) -> None:
            raise AssertionError("no span work without an SDK")

        monkeypatch.setattr(telemetry.Telemetry, "transition", forbidden)
        monkeypatch.setattr(telemetry.Telemetry, "step", forbidden)
        assert not tracing.stepping()
        counted: list[object] = []
        monkeypatch.setattr(events, "changes", lambda *a, **k: counted.append(a) or [])
        receivers = events.listening()
        instance_id = flows.IfElse.start({"script": {}})
        assert flows.IfElse.get(instance_id).status is Status.COMPLETED
        assert bool(counted) == receivers  # computed only for the signals' receivers, if any
    finally:
        monkeypatch.undo()  # before installing again: the methods bound are the real ones
        telemetry.uninstall()
        if was:
            telemetry.install()


def test_a_tracer_alone_or_a_meter_alone(storage: InMemoryStorage) -> None:
    """Spans without metrics, and step durations without spans, each still recorded."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    was = telemetry.installed()
    found = Otel()
    try:
        telemetry.install(tracer_provider=found.tracer_provider, meter_provider=NoOpMeterProvider())
        flows.IfElse.start({"script": {}})
        assert found.span("hephaestus.start IfElse")
        spans = len(found.spans())
        assert not found.points("hephaestus.step.duration")
        telemetry.install(tracer_provider=NoOpTracerProvider(), meter_provider=found.meter_provider)
        flows.IfElse.start({"script": {}})
        assert len(found.spans()) == spans
        assert found.points("hephaestus.step.duration")
        assert found.count("hephaestus.instances.completed", workflow=flows.IfElse.path()) == 1
    finally:
        telemetry.uninstall()
        if was:
            telemetry.install()


def test_a_global_provider_set_after_install_is_found(
    monkeypatch: pytest.MonkeyPatch, storage: InMemoryStorage
) -> None:
    """Installed before the project sets its providers (the API's proxies then): no spans,
    until a provider is set; from the next transition on, spans again."""
    import opentelemetry.metrics._internal as metrics_globals
    import opentelemetry.trace as trace_globals

    from hephaestus_django.runtime import events

    was = telemetry.installed()
    found = Otel()
    monkeypatch.setattr(trace_globals, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(metrics_globals, "_METER_PROVIDER", None)
    monkeypatch.delenv("OTEL_PYTHON_TRACER_PROVIDER", raising=False)
    monkeypatch.delenv("OTEL_PYTHON_METER_PROVIDER", raising=False)
    telemetry.install()
    try:
        assert not tracing.stepping()
        flows.IfElse.start({"script": {}})
        assert found.spans() == []
        # What trace.set_tracer_provider / metrics.set_meter_provider do, once per process.
        monkeypatch.setattr(trace_globals, "_TRACER_PROVIDER", found.tracer_provider)
        monkeypatch.setattr(metrics_globals, "_METER_PROVIDER", found.meter_provider)
        assert tracing.stepping()
        flows.IfElse.start({"script": {}})
        assert found.span("hephaestus.start IfElse")
        assert events.listening()  # the counters' events are computed again
    finally:
        telemetry.uninstall()
        monkeypatch.undo()
        if was:
            telemetry.install()


def test_throttled_steps_are_counted_and_their_wait_in_line_measured(
    otel: Otel, clock: Clock
) -> None:
    storage = InMemoryStorage(clock=clock)
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    GATE.reset()
    GATE.opened.set()
    try:
        ids = [LimitedFlow.start({}) for _ in range(4)]  # a limit of 2: two wait in line
        clock.advance(seconds=7)
        dispatcher.drain()
        assert {LimitedFlow.get(i).status for i in ids} == {Status.COMPLETED}
    finally:
        runner.close()
        configure()
    limit = dotted_path(Limited)
    assert otel.count("hephaestus.step.throttled", limit=limit, step=Limited.path()) == 2
    [wait] = otel.points("hephaestus.slot.wait")
    assert dict(wait.attributes) == {"hephaestus.limit": limit}
    assert wait.count == 2
    assert wait.sum == pytest.approx(14.0)  # each admitted 7 s after it joined the line
