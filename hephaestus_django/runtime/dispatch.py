"""The ``Dispatcher`` protocol: how ``QueuedRunner`` hands work to a job engine.

A dispatcher knows two kinds of job, both small JSON payloads naming an
instance rather than carrying it, so a job is never stale data:

- :class:`StepJob`: execute one step of one instance, now;
- :class:`WakeUp`: look at one instance at a time, when a timer of it is due.

and one fact: whether what it enqueues joins the caller's open transaction on
a storage (``joins_transaction``). When it does (procrastinate or the Django
Tasks database backend on the storage's own database), the runner enqueues
inside the transaction that records the transition, so the transition and its
jobs commit together or not at all. When it does not, the runner enqueues once
the transition has committed; a process that dies in between leaves the steps
without a job, and the sweep (``hephaestus_worker``) enqueues them again once
the instance's lease lapses. Either way no runnable step is stranded.

A job engine delivers a job at least once; the runner makes a repeated, late or
early delivery a no-op (see :mod:`~hephaestus_django.runtime.queued`). The job
engine's worker calls :func:`receive` with the payload it was given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from hephaestus_django.core.errors import InvalidJobError
from hephaestus_django.core.instance import coerce_instance_id
from hephaestus_django.core.text import shown, unstorable
from hephaestus_django.runtime.contract import Storage

logger = logging.getLogger("hephaestus_django.queue")

STEP = "step"
WAKE_UP = "wake-up"
BULK = "bulk"


@dataclass(frozen=True, slots=True)
class StepJob:
    """Execute ``step`` (a step class's dotted path) of instance ``instance_id``, stored in
    the storage configured as ``storage``, as its attempt number ``attempt``.

    The attempt lets a worker recognise a job delivered late: a duplicate of an attempt that
    failed, arriving once the step's retry timer has made it runnable again, finds the step at
    a later attempt and does nothing, so a step never runs more often than its retry policy
    allows because its job engine delivered a job twice.
    """

    storage: str
    instance_id: UUID
    step: str
    attempt: int = 1
    trace: Mapping[str, str] | None = field(default=None, compare=False)
    """The trace context of the transition that made the step runnable (W3C ``traceparent``,
    ``tracestate``), when tracing is on: the step's span in the worker is its child."""
    priority: int = field(default=0, compare=False)
    """The instance's priority (``start(..., priority=N)``), which a dispatcher passes on to
    its job engine's priority where it has one; not part of the payload."""
    item: int | None = None
    """An item job of a map step: run item ``item`` of the map ``step`` (its index in the
    list), not the step itself (:mod:`~hephaestus_django.runtime.map_jobs`)."""
    at: datetime | None = field(default=None, compare=False)
    """Not to run before this time (an item's retry after its backoff): a dispatcher defers
    the job to it where its engine can, and the runner waits for it otherwise."""

    def payload(self) -> dict[str, str]:
        """The JSON object a job engine carries (strings only: every engine can). A first
        attempt's payload has no ``attempt``, as before attempts were carried."""
        payload = {
            "kind": STEP,
            "storage": self.storage,
            "instance": str(self.instance_id),
            "step": self.step,
        }
        if self.attempt != 1:
            payload["attempt"] = str(self.attempt)
        if self.item is not None:
            payload["item"] = str(self.item)
        if self.at is not None:
            payload["at"] = self.at.isoformat()
        return _traced(payload, self.trace)

    def __str__(self) -> str:
        attempt = f", attempt {self.attempt}" if self.attempt != 1 else ""
        item = f"item {self.item} of " if self.item is not None else ""
        return f"{item}step {self.step} of instance {self.instance_id} ({self.storage}{attempt})"


@dataclass(frozen=True, slots=True)
class WakeUp:
    """Fire the timers of instance ``instance_id`` that are due at ``at``."""

    storage: str
    instance_id: UUID
    at: datetime
    trace: Mapping[str, str] | None = field(default=None, compare=False)
    """The trace context of the transition that set the timer, when tracing is on."""

    def payload(self) -> dict[str, str]:
        """The JSON object a job engine carries; ``at`` as ISO 8601 with its offset."""
        return _traced(
            {
                "kind": WAKE_UP,
                "storage": self.storage,
                "instance": str(self.instance_id),
                "at": self.at.isoformat(),
            },
            self.trace,
        )

    def __str__(self) -> str:
        return f"wake-up of instance {self.instance_id} ({self.storage}) at {self.at.isoformat()}"


@dataclass(frozen=True, slots=True)
class BulkBatch(WakeUp):
    """Run the next batch of the bulk operation ``instance_id`` (its id: the payload's
    ``instance``), from ``at`` on (:mod:`~hephaestus_django.runtime.bulk`).

    A wake-up to the dispatchers, so every job engine carries it without a task of its own;
    the runner that handles it enqueues the next batch's until the operation is done. An older
    worker refuses the kind (the job is dropped): the ``hephaestus_worker`` runs the batches too.
    """

    def payload(self) -> dict[str, str]:
        return {"kind": BULK, "storage": self.storage, "instance": str(self.instance_id)}

    def __str__(self) -> str:
        return f"batch of bulk operation {self.instance_id} ({self.storage})"


Job = StepJob | WakeUp

TRACE_KEYS = ("traceparent", "tracestate")
"""The payload keys of a job's trace context (W3C Trace Context), present only when traced."""


def _traced(payload: dict[str, str], trace: Mapping[str, str] | None) -> dict[str, str]:
    """``payload`` with the trace context's keys, if there is one."""
    if trace:
        payload.update((key, trace[key]) for key in TRACE_KEYS if trace.get(key))
    return payload


def _trace_of(payload: Mapping[Any, Any]) -> dict[str, str] | None:
    """The trace context a payload carries; a malformed one is ignored, never an error: a
    job runs the same with or without its trace."""
    found = {
        key: value
        for key in TRACE_KEYS
        if isinstance(value := payload.get(key), str)
        and 0 < len(value) <= 512
        and unstorable(value) is None  # carried into the jobs this one enqueues
    }
    return found or None


def job_from_payload(payload: object) -> Job:
    """The job a payload describes; :class:`InvalidJobError` naming what is wrong otherwise.

    Keys it does not know are ignored, so a payload written by a newer release (with, say,
    a trace context) still runs on an older worker during a rolling deploy.
    """
    if not isinstance(payload, Mapping):
        raise InvalidJobError(f"a job payload must be a JSON object, not {payload!r}")
    kind = _text(payload, "kind")
    storage = _text(payload, "storage")
    try:
        instance_id = coerce_instance_id(payload.get("instance"))
    except ValueError:
        raise InvalidJobError(
            f"the job payload's 'instance' must be a UUID, not {payload.get('instance')!r}"
        ) from None
    if kind == STEP:
        return StepJob(
            storage,
            instance_id,
            _text(payload, "step"),
            _attempt(payload),
            trace=_trace_of(payload),
            item=_item(payload),
            at=_at(payload, instance_id) if payload.get("at") is not None else None,
        )
    if kind == WAKE_UP:
        return WakeUp(storage, instance_id, _at(payload, instance_id), trace=_trace_of(payload))
    if kind == BULK:
        return BulkBatch(storage, instance_id, datetime.now(UTC))
    raise InvalidJobError(
        f"a job payload's 'kind' must be {STEP!r}, {WAKE_UP!r} or {BULK!r}, not {kind!r}"
    )


def _at(payload: Mapping[Any, Any], instance_id: UUID) -> datetime:
    """The payload's ``at``: an ISO 8601 time with its UTC offset."""
    text = _text(payload, "at")
    what = "wake-up" if payload.get("kind") == WAKE_UP else "job"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidJobError(
            f"the {what} of instance {instance_id} has 'at' {text!r}, which is not an ISO 8601 time"
        ) from None
    if at.tzinfo is None:
        raise InvalidJobError(
            f"the {what} of instance {instance_id} has 'at' {payload.get('at')!r} "
            f"without a UTC offset"
        )
    return at


MAX_ATTEMPT = 2**31 - 1
"""The highest attempt a job may carry: the largest PostgreSQL ``integer``, the type the
storages compare it as."""


def _attempt(payload: Mapping[Any, Any]) -> int:
    """The payload's attempt number: 1 when absent (a first attempt, or a job enqueued before
    attempts were carried: if it was a later one, it is dropped and the sweep enqueues the step
    again once the lease lapses)."""
    value = payload.get("attempt")
    if value is None:
        return 1
    # ASCII digits only, and short: int() of a long string is slow, and an attempt past what
    # the storage's integer holds would reach SQL as a DataError instead of being refused here.
    if (
        not isinstance(value, str)
        or not (value.isascii() and value.isdecimal())
        or len(value) > len(str(MAX_ATTEMPT))
        or not 1 <= int(value) <= MAX_ATTEMPT
    ):
        what = shown(value) if isinstance(value, str) else repr(value)[:40]
        raise InvalidJobError(
            f"the job payload's 'attempt' must be a whole number from 1 to {MAX_ATTEMPT} as a "
            f"string, not {what}"
        )
    return int(value)


def _item(payload: Mapping[Any, Any]) -> int | None:
    """The payload's map item index: None when absent (a step job)."""
    value = payload.get("item")
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not (value.isascii() and value.isdecimal())
        or len(value) > len(str(MAX_ATTEMPT))
        or int(value) > MAX_ATTEMPT
    ):
        what = shown(value) if isinstance(value, str) else repr(value)[:40]
        raise InvalidJobError(
            f"the job payload's 'item' must be a whole number from 0 to {MAX_ATTEMPT} as a "
            f"string, not {what}"
        )
    return int(value)


def _text(payload: Mapping[Any, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidJobError(
            f"the job payload's {key!r} must be a non-empty string, not {value!r}"
        )
    problem = unstorable(value)
    if problem is not None:
        raise InvalidJobError(
            f"the job payload's {key!r} {shown(value)} contains {problem}; no step, storage or "
            "time is named so"
        )
    return value


@runtime_checkable
class Dispatcher(Protocol):
    """What ``QueuedRunner`` needs from a job engine."""

    def enqueue_steps(self, jobs: Sequence[StepJob]) -> None:
        """Enqueue one job per step, to run as soon as a worker is free.

        Called inside the transaction that made the steps runnable when
        ``joins_transaction`` says so, else right after it committed.
        """
        ...

    def enqueue_wakeup(self, wakeup: WakeUp) -> None:
        """Enqueue a job that runs at ``wakeup.at`` (or soon after)."""
        ...

    def joins_transaction(self, storage: Storage) -> bool:
        """Whether what this dispatcher enqueues commits with ``storage``'s open transaction."""
        ...


@runtime_checkable
class JobsForPut(Protocol):
    """A dispatcher whose jobs a storage can enqueue in the statement of a put
    (:class:`~hephaestus_django.runtime.contract.JobsInPut`): one statement, not a
    transaction of a write and an enqueue."""

    def jobs_for_put(
        self, steps: Sequence[StepJob], wakeup: WakeUp | None, storage: Storage
    ) -> object | None:
        """What ``storage.put_with_jobs`` enqueues ``steps`` and ``wakeup`` with (None when
        there is nothing to enqueue); only asked where ``joins_transaction(storage)``."""
        ...


@runtime_checkable
class PendingJobs(Protocol):
    """A dispatcher that can tell which step jobs still wait in its queue (optional).

    The sweep asks it before it enqueues a taken-over instance's steps again: a step whose job
    still waits (no worker has taken it yet: the workers are busy, or there are none) keeps that
    job and gets no second one, so the queue holds at most one pending job per runnable step
    however long the outage lasts. A job a worker has taken is not pending: whether its run is
    alive is the instance's lease's to say (the run renews it), and a lapsed lease means it is
    not. A dispatcher without this method gets every step enqueued again, as before.
    """

    def pending_steps(self, jobs: Sequence[StepJob]) -> frozenset[StepJob]:
        """Those of ``jobs`` (equal in storage, instance, step and attempt) that have a job
        in the queue no worker has started yet. Read on the connection the dispatcher enqueues
        through, so inside the caller's transaction where it joins one."""
        ...
