"""Admission: which of an instance's runnable steps may execute now, under their concurrency
and rate limits (and their workflow's limit on starts or running instances), and giving their
slots back once they have (a running instance's slot: once it has ended, :func:`release_on_end`).

Both runners ask :func:`admit` before they execute (``LocalRunner``) or enqueue
(``QueuedRunner``) runnable steps, and :func:`release` once a step's result is recorded. A step
without a limit, a compensation (it undoes work and must not wait behind new work), and any
step on a storage that keeps no slots are admitted at once. A key function that raises, or
returns no string, gives the step a failure (:class:`~hephaestus_django.ConcurrencyKeyError`)
instead: recorded on its instance, other instances unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from hephaestus_django.core.children import ENDED
from hephaestus_django.core.engine import Activation, Executed
from hephaestus_django.core.errors import ConcurrencyKeyError, InvalidInstanceError
from hephaestus_django.core.flow import (
    RUNNING_PREFIX,
    SlotRequest,
    flow_request,
    may_be_limited,
    running_request,
)
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.runtime import events
from hephaestus_django.runtime.contract import SlotKeeping, Storage, offers
from hephaestus_django.runtime.logs import about
from hephaestus_django.runtime.slots import UNTIL_THE_END, slot_lease

logger = logging.getLogger("hephaestus_django.runner")

PRIORITY_KEY = "hephaestus_priority"
"""Where ``start(..., priority=N)`` keeps an instance's priority, in its runtime metadata."""


MAX_PRIORITY = 2**31 - 1
"""The largest priority (it is stored in an ``integer`` column with each place in line)."""


def priority_of(instance: Instance) -> int:
    """The instance's priority (0 unless it was started with one)."""
    value = instance.runtime_metadata.get(PRIORITY_KEY, 0)
    valid = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_PRIORITY
    return value if valid else 0


def with_priority(metadata: Mapping[str, Any] | None, priority: int) -> Mapping[str, Any] | None:
    """The runtime metadata an instance started with ``priority`` gets (unchanged for 0);
    ``InvalidInstanceError`` for a priority that is not an int."""
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > MAX_PRIORITY:
        raise InvalidInstanceError(
            f"priority must be an int between -{MAX_PRIORITY} and {MAX_PRIORITY}, not {priority!r}"
        )
    if priority == 0:
        return metadata
    if metadata is not None and not isinstance(metadata, Mapping):
        return metadata  # refused with its own message when the instance is built
    return {**(metadata or {}), PRIORITY_KEY: priority}


@dataclass
class Admission:
    """What :func:`admit` decided for one wave."""

    run: list[Activation] = field(default_factory=list)
    """The steps to execute now (admitted, or without a limit)."""
    held: dict[StepClass, SlotRequest] = field(default_factory=dict)
    """The slots taken for them, to give back with :func:`release`."""
    waiting: dict[StepClass, SlotRequest] = field(default_factory=dict)
    """The steps left waiting in line."""
    refused: list[Executed] = field(default_factory=list)
    """The steps whose key function failed: their failures, to record."""


def admit(
    instance: Instance, activations: Iterable[Activation], storage: Storage, lease: timedelta
) -> Admission:
    """Take a slot for each limited step of ``activations``; see the module."""
    decided = Admission()
    slots = cast(SlotKeeping, storage) if offers(storage, SlotKeeping) else None
    for activation in activations:
        # Most steps have no limit: nothing to work out, nothing to ask the storage.
        if slots is None or activation.compensating or not may_be_limited(activation.step):
            decided.run.append(activation)
            continue
        try:
            request = flow_request(
                instance.workflow,
                activation.step,
                instance.context,
                started=bool(instance.execution_history),
            )
        except ConcurrencyKeyError as error:
            logger.error("instance %s: %s", instance.id, error, extra=about(instance))
            decided.refused.append(Executed(activation.step, error=error))
            continue
        if request is None:
            decided.run.append(activation)
        elif slots.admit(
            instance.id,
            dotted_path(activation.step),
            request,
            priority=priority_of(instance),
            lease=slot_lease(request.name, lease),
        ):
            decided.run.append(activation)
            if not request.name.startswith(RUNNING_PREFIX):  # that one is kept until the end
                decided.held[activation.step] = request
        else:
            decided.waiting[activation.step] = request
            events.throttled(storage, instance, activation.step, request.name, request.key)
    return decided


def release(
    instance_id: UUID,
    held: Mapping[StepClass, SlotRequest],
    storage: Storage,
    lease: timedelta,
) -> list[tuple[UUID, str]]:
    """Give back the slots of ``held``; the waiters admitted in their place."""
    if not held or not offers(storage, SlotKeeping):
        return []
    slots = cast(SlotKeeping, storage)
    admitted = []
    # In one order everywhere: a transaction that frees several slots takes their locks in it.
    for step, request in sorted(held.items(), key=lambda item: (item[1].name, item[1].key)):
        admitted.extend(slots.release(instance_id, dotted_path(step), request, lease=lease))
    return admitted


def holds_until_end(instance: Instance | None) -> bool:
    """Whether a write of ``instance`` may end an instance holding a slot of its workflow's
    concurrency limit (its release then belongs in the write's transaction)."""
    return instance is not None and instance.workflow.concurrency is not None


def release_on_end(
    storage: Storage, before: Instance | None, after: Instance
) -> list[tuple[UUID, str]]:
    """When the write of ``after`` ended the instance, give back its slot of its workflow's
    concurrency limit (or its place in line) and admit the next in line; call it inside the
    write's transaction. The waiters admitted (instance, start step path).

    Called after every write: the cheap questions come first (did the write end it? does its
    workflow have a limit?), the storage's optional protocol last and once per storage type
    (:func:`~hephaestus_django.runtime.contract.offers`), not through ``isinstance``.
    """
    if after.status not in ENDED or (before is not None and before.status in ENDED):
        return []
    if not holds_until_end(after) or not offers(storage, SlotKeeping):
        return []
    try:
        request = running_request(after.workflow, after.context)
    except ConcurrencyKeyError:
        return []  # no slot was taken: the start failed on it
    if request is None:
        return []
    start = dotted_path(after.workflow.graph.start)
    return cast(SlotKeeping, storage).release(after.id, start, request, lease=UNTIL_THE_END)
