"""OpenTelemetry: a span per transition and per step, metrics, the trace carried into jobs.

Needs only ``opentelemetry-api`` (``pip install hephaestus-django[otel]``); the project
configures the SDK and its exporters as usual, and nothing here is exported until it does
(the API alone makes spans that record nothing). Without the package, :func:`install`
returns False and the runners run exactly as before. Django-free: a project without Django
calls :func:`install` itself; the Django app calls it in ``ready()`` unless
``HEPHAESTUS["TELEMETRY"]`` is False.

**Spans** (tracer ``hephaestus_django``), each with the attributes ``hephaestus.instance_id``,
``hephaestus.workflow`` (dotted path), ``hephaestus.workflow_version``:

- ``hephaestus.start``, ``.resume``, ``.retry``, ``.cancel``: the transition a caller asked
  for (``hephaestus.transition``; ``hephaestus.event`` for a resume; ``hephaestus.status``
  as written); the sweep's ``hephaestus.timer`` (a due timer fired) and
  ``hephaestus.recover`` (a dead runner's instance taken over), and ``QueuedRunner``'s
  wake-up job, ``hephaestus.timer`` too. The workflow's name is appended to the span's name
  once known (``hephaestus.start OrderWorkflow``).
- ``hephaestus.step <Step>``: one execution of a step (``hephaestus.step``,
  ``hephaestus.attempt``, ``hephaestus.compensation``), ending with ``hephaestus.outcome``
  (``event``, ``async`` or ``error``) and ``hephaestus.event``; an error is recorded on it
  and sets its status. Built-in ``Done`` steps, which do nothing, get none.

**Trace context.** In one process the current context is used: with ``LocalRunner`` a step's
span is a child of the ``start``/``resume``/... span that ran it (the branches of a fan-out,
run on pool threads, too). ``QueuedRunner`` puts the W3C ``traceparent`` (and
``tracestate``) of the transition that enqueued a job into the job's payload, and the worker
makes it current again while it runs the job, so the step's span, in another process, is a
child of that ``start``/``resume`` span; the jobs a job enqueues carry the same context on.

**Metrics** (meter ``hephaestus_django``):

=================================  =========  =================================================
``hephaestus.instances.started``   counter    instances started (``hephaestus.workflow``)
``hephaestus.instances.completed`` counter    instances completed
``hephaestus.instances.failed``    counter    instances failed
``hephaestus.instances.cancelled`` counter    instances cancelled
``hephaestus.instances.stalled``   counter    instances whose lease lapsed with steps to run
                                              (their runner or job died), taken over
``hephaestus.step.duration``       histogram  seconds per step execution (``hephaestus.step``,
                                              ``hephaestus.outcome``)
``hephaestus.timer.lag``           histogram  seconds between a timer's due time and its
                                              firing (``hephaestus.retry``: a retry backoff)
``hephaestus.step.throttled``      counter    steps found over their concurrency limit and
                                              left waiting in line (``hephaestus.step``,
                                              ``hephaestus.limit``)
``hephaestus.slot.wait``           histogram  seconds a step waited in line for a slot, from
                                              joining it to its admission
                                              (``hephaestus.limit``)
=================================  =========  =================================================

The counters are added once the write that recorded the change has committed (they listen to
:mod:`~hephaestus_django.runtime.events`), so a rolled-back start is not counted. A wait is
recorded when the release (or the sweep, or a cancel) admits the waiter, in its transaction.

**Nothing to do, nothing done.** With ``opentelemetry-api`` alone (no SDK's provider set, or
a no-op one), every span and instrument is a no-op: then the runners make no span, build no
attribute and compute no lifecycle event for the metrics, per transition and per step (a
check of the providers instead, a few hundred nanoseconds). Once a real provider is found it
is remembered (OpenTelemetry lets a global provider be set once), so setting it after
:func:`install` works as before. The trace context still travels in ``QueuedRunner``'s jobs
with the API alone (the API propagates a context it did not make).
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID

from hephaestus_django.core import engine
from hephaestus_django.core.engine import Activation, Executed
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.outcomes import Async, Event
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime import events, slots, tracing

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

NAME = "hephaestus_django"
"""The instrumentation scope of the tracer and the meter."""

_installed: Telemetry | None = None


def available() -> bool:
    """Whether ``opentelemetry-api`` can be imported."""
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def install(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> bool:
    """Trace and measure the runners with OpenTelemetry; False (nothing done) without it.

    The providers default to the global ones (``trace.set_tracer_provider``...), also when the
    project sets them after this call; a test passes its own. Installing again replaces what
    was installed.
    """
    global _installed
    if not available():
        return False
    telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    uninstall()
    tracing.install(telemetry)
    events.add_listener(telemetry.on_events, wants=telemetry.wants_events)
    slots.observe_waits(telemetry.on_waits)
    _installed = telemetry
    return True


def uninstall() -> None:
    """Stop tracing and measuring (what :func:`install` did is undone)."""
    global _installed
    if _installed is not None:
        events.remove_listener(_installed.on_events)
        slots.stop_observing_waits(_installed.on_waits)
        if tracing.installed() is _installed:
            tracing.install(None)
        _installed = None


def installed() -> bool:
    """Whether the runners are traced and measured now."""
    return _installed is not None


class Telemetry:
    """The :class:`~hephaestus_django.runtime.tracing.Tracer` and lifecycle listener that
    speak OpenTelemetry."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        version = _version()
        self._trace = trace
        import opentelemetry.metrics._internal as metrics_globals

        self._spans = _Configured(tracer_provider, trace.get_tracer_provider, trace, "_TRACER")
        self._metrics = _Configured(
            meter_provider, metrics.get_meter_provider, metrics_globals, "_METER"
        )
        self._tracer = trace.get_tracer(NAME, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(NAME, version, meter_provider=meter_provider)
        # W3C Trace Context whatever the project's global propagators: the job payload has
        # room for its two keys only.
        self._propagator = TraceContextTextMapPropagator()
        self._counters = {
            events.InstanceStarted: meter.create_counter(
                "hephaestus.instances.started", unit="{instance}", description="Instances started"
            ),
            events.InstanceCompleted: meter.create_counter(
                "hephaestus.instances.completed",
                unit="{instance}",
                description="Instances completed",
            ),
            events.InstanceFailed: meter.create_counter(
                "hephaestus.instances.failed", unit="{instance}", description="Instances failed"
            ),
            events.InstanceCancelled: meter.create_counter(
                "hephaestus.instances.cancelled",
                unit="{instance}",
                description="Instances cancelled",
            ),
            events.InstanceTakenOver: meter.create_counter(
                "hephaestus.instances.stalled",
                unit="{instance}",
                description="Instances whose runner stopped renewing its lease, taken over",
            ),
        }
        self._step_duration = meter.create_histogram(
            "hephaestus.step.duration", unit="s", description="Duration of a step's execution"
        )
        self._timer_lag = meter.create_histogram(
            "hephaestus.timer.lag",
            unit="s",
            description="How late a timer fired after its due time",
        )
        self._throttled = meter.create_counter(
            "hephaestus.step.throttled",
            unit="{step}",
            description="Steps found over their concurrency limit, left waiting in line",
        )
        self._slot_wait = meter.create_histogram(
            "hephaestus.slot.wait",
            unit="s",
            description="How long a step waited in line for a concurrency slot",
        )

    # --- whether there is anything to do (see the module's docstring) ---------------------

    def wants_transitions(self) -> bool:
        """Whether a transition's span is recorded anywhere (the runtime asks first)."""
        return self._spans()

    def wants_steps(self) -> bool:
        """Whether a step's span or its duration is recorded anywhere."""
        return self._spans() or self._metrics()

    def wants_events(self) -> bool:
        """Whether the counters count anywhere: if not, no lifecycle event is computed for
        them."""
        return self._metrics()

    # --- the runtime's tracer -----------------------------------------------------------

    @contextmanager
    def transition(self, kind: str, subject: object, event: str | None) -> Iterator[_Span]:
        """A span around a transition; see the module's docstring for its name and
        attributes."""
        attributes: dict[str, Any] = {}
        workflow: type[WorkflowDefinition] | None = None
        if isinstance(subject, Instance):
            attributes.update(_instance_attributes(subject))
            workflow = subject.workflow
            if kind == "takeover":
                kind = "recover" if engine.runnable_steps(subject) else "timer"
        elif isinstance(subject, type) and issubclass(subject, WorkflowDefinition):
            workflow = subject
            attributes["hephaestus.workflow"] = subject.path()
        elif isinstance(subject, UUID | str):
            attributes["hephaestus.instance_id"] = str(subject)
        elif isinstance(getattr(subject, "instance_id", None), UUID):
            attributes["hephaestus.instance_id"] = str(subject.instance_id)  # type: ignore[attr-defined]
        attributes["hephaestus.transition"] = kind
        if event is not None:
            attributes["hephaestus.event"] = event
        name = f"hephaestus.{kind}"
        if workflow is not None:
            name = f"{name} {workflow.__qualname__}"
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield _Span(span, name if workflow is None else None)

    @contextmanager
    def step(self, instance: Instance, activation: Activation) -> Iterator[_Span]:
        """A span around one execution of a step, and its duration measured."""
        step = activation.step
        if not self._spans():  # the duration alone
            measured = _Span(None, None)
            started = time.perf_counter()
            try:
                yield measured
            finally:
                self._record_duration(instance, activation, measured, started)
            return
        attributes: dict[str, Any] = {
            **_instance_attributes(instance),
            "hephaestus.step": step.path(),
            "hephaestus.attempt": instance.attempts.get(step, 0) + 1,
            "hephaestus.compensation": activation.compensating,
        }
        holder: _Span | None = None
        started = time.perf_counter()
        try:
            with self._tracer.start_as_current_span(
                f"hephaestus.step {step.__qualname__}", attributes=attributes
            ) as span:
                holder = _Span(span, None)
                yield holder
        finally:
            self._record_duration(instance, activation, holder, started)

    def _record_duration(
        self, instance: Instance, activation: Activation, holder: _Span | None, started: float
    ) -> None:
        self._step_duration.record(
            time.perf_counter() - started,
            {
                "hephaestus.workflow": instance.workflow.path(),
                "hephaestus.step": activation.step.path(),
                "hephaestus.outcome": holder.outcome if holder is not None else "error",
            },
        )

    def carrier(self) -> dict[str, str] | None:
        """The current context as W3C Trace Context headers (None outside any span)."""
        found: dict[str, str] = {}
        self._propagator.inject(found)
        return found or None

    def restored(self, carrier: Mapping[str, str] | None) -> AbstractContextManager[object]:
        """The context ``carrier`` describes, current for the block."""
        return _attached(self._propagator.extract(dict(carrier or {})))

    # --- the lifecycle events' listener: the counters, after the commit ---------------------

    def on_events(self, found: Sequence[events.LifecycleEvent]) -> None:
        """Count what the committed write did."""
        for event in found:
            counter = self._counters.get(type(event))
            if counter is not None:
                counter.add(1, {"hephaestus.workflow": event.workflow.path()})
            elif isinstance(event, events.StepThrottled):
                self._throttled.add(
                    1,
                    {
                        "hephaestus.workflow": event.workflow.path(),
                        "hephaestus.step": event.step.path() if event.step else "",
                        "hephaestus.limit": event.limit,
                    },
                )
            elif isinstance(event, events.TimerFired):
                self._timer_lag.record(
                    max(event.lag.total_seconds(), 0.0),
                    {"hephaestus.workflow": event.workflow.path(), "hephaestus.retry": event.retry},
                )

    def on_waits(self, limit: str, seconds: Sequence[float]) -> None:
        """Record how long the waiters a release admitted waited in line."""
        for waited in seconds:
            self._slot_wait.record(waited, {"hephaestus.limit": limit})


class _Configured:
    """Whether a provider (the one given, else the global one) records anything: not the
    API's own proxy (no provider set yet) nor its no-op. A real one, once found, is
    remembered. Until then each call reads the API's global (``_TRACER_PROVIDER`` /
    ``_METER_PROVIDER``: one attribute read, where ``get_tracer_provider()`` also looks at the
    environment each time) and asks the getter only once it is set; an API without that
    global is asked through the getter every time."""

    def __init__(
        self, given: object | None, current: Callable[[], object], api: object, prefix: str
    ) -> None:
        self._current = None if given is not None else current
        self._real = given is not None and _records(given)
        self._api = api
        self._global = f"{prefix}_PROVIDER"
        if given is None and f"OTEL_PYTHON{prefix}_PROVIDER" in os.environ:
            self._real = _records(current())  # the API loads the environment's provider

    def __call__(self) -> bool:
        if self._real:
            return True
        if self._current is None or getattr(self._api, self._global, self) is None:
            return False  # given a no-op, or no global provider set yet
        self._real = _records(self._current())
        return self._real


def _records(provider: object) -> bool:
    """Whether ``provider`` is more than the API's proxy or no-op (which live in the API's own
    modules; an SDK's, or any other implementation's, live elsewhere)."""
    return not type(provider).__module__.startswith(_API_MODULES)


_API_MODULES = ("opentelemetry.trace", "opentelemetry.metrics")


class _Span:
    """A span as the runtime sees it (:class:`~hephaestus_django.runtime.tracing.Span`); with
    no span (``None``: the duration alone is measured), it keeps the step's outcome only."""

    def __init__(self, span: Span | None, unnamed: str | None) -> None:
        self._span = span
        self._unnamed = unnamed
        self.outcome = "error"

    def set_instance(self, instance: Instance) -> None:
        if self._span is None:
            return
        self._span.set_attributes(
            {**_instance_attributes(instance), "hephaestus.status": instance.status.value}
        )
        if self._unnamed is not None:
            self._span.update_name(f"{self._unnamed} {instance.workflow.__qualname__}")

    def set_result(self, result: Executed) -> None:
        if self._span is None:
            self.outcome = _outcome(result)
            return
        if result.error is not None:
            from opentelemetry.trace import Status, StatusCode

            self.outcome = "error"
            self._span.record_exception(result.error)
            self._span.set_status(
                Status(StatusCode.ERROR, f"{type(result.error).__name__}: {result.error}")
            )
        elif isinstance(result.outcome, Async):
            self.outcome = "async"
        elif isinstance(result.outcome, Event):
            self.outcome = "event"
            self._span.set_attribute("hephaestus.event", result.outcome.name)
        self._span.set_attribute("hephaestus.outcome", self.outcome)


def _outcome(result: Executed) -> str:
    if result.error is not None:
        return "error"
    if isinstance(result.outcome, Async):
        return "async"
    return "event" if isinstance(result.outcome, Event) else "error"


@contextmanager
def _attached(context: Any) -> Iterator[object]:
    from opentelemetry import context as otel_context

    token = otel_context.attach(context)
    try:
        yield context
    finally:
        otel_context.detach(token)


def _instance_attributes(instance: Instance) -> dict[str, Any]:
    return {
        "hephaestus.instance_id": str(instance.id),
        "hephaestus.workflow": instance.workflow.path(),
        "hephaestus.workflow_version": instance.workflow_version,
    }


def _version() -> str:
    try:
        return importlib.metadata.version("hephaestus-django")
    except importlib.metadata.PackageNotFoundError:
        return ""
