"""Freeing the slots of an instance that will not use them: cancelled, failed or deleted.

A step's slot is given back when its result is recorded (:func:`~hephaestus_django.runtime.
admission.release`). An instance that is cancelled, deleted, or fails for good while one of its
steps holds a slot (a parallel branch, a job still running elsewhere) or waits in line would
otherwise keep it until the sweep finds it no longer runs. So the write that cancels or fails
the instance (or its delete, through ``Runner.delete``) frees every slot and place in line it
has, and admits the next waiters of those limits, in its own transaction
(:meth:`~hephaestus_django.runtime.contract.SlotKeeping.free`): the cancel, the freed slots
and the admissions commit together, and a waiter never waits on a holder that is gone.

The late result of a cancelled holder's step, still running when it was cancelled, is refused
(the instance ended), and its release finds no slot of its own to give back: it never takes
a slot again, nor frees one twice (a release counts the live holders, it does not add room).

Only an instance whose workflow declares a limit can hold a slot, so only its cancels and
failures pay for this (:func:`frees_slots`; a completed instance holds none). The runners make
those writes inside a transaction, which takes the limits' locks before the instance's row
(:func:`lock_slots`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from uuid import UUID

from hephaestus_django.core.children import ENDED
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.status import Status
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime.contract import SlotKeeping, Storage, offers

if TYPE_CHECKING:
    from hephaestus_django.runtime.verbs import Runner

_limited: dict[type[WorkflowDefinition], bool] = {}


def limited(workflow: type[WorkflowDefinition]) -> bool:
    """Whether any step of ``workflow`` (or the workflow itself) declares a limit (a
    concurrency or a rate limit: a cancelled holder of a rate limit's slot spends it)."""
    found = _limited.get(workflow)
    if found is None:
        found = any(
            getattr(owner, attribute, None) is not None
            for owner in (workflow, *workflow.graph.order)
            for attribute in ("concurrency", "rate_limit")
        )
        _limited[workflow] = found
    return found


def frees_slots(before: Instance | None, after: Instance) -> bool:
    """Whether the write of ``after`` (from ``before``) cancels or fails an instance that may
    hold slots. A completed one holds none: each of its steps gave its slot back with its
    result (and the sweep forgets whatever an odd case left)."""
    if after.status not in (Status.CANCELLED, Status.FAILED):
        return False
    if before is not None and before.status in ENDED:
        return False
    return limited(after.workflow)


def lock_slots(storage: Storage, instance_id: UUID) -> None:
    """Take the locks of the instance's limits before its row's (see
    :meth:`~hephaestus_django.runtime.contract.SlotKeeping.lock_slots`), in the caller's
    transaction: the lock order of a write that ends it is then the one of every release
    (limit, then the rows it wakes), and the two never wait for each other in a circle."""
    if offers(storage, SlotKeeping):
        cast(SlotKeeping, storage).lock_slots(instance_id)


def free_slots(runner: Runner, storage: Storage, instance_id: UUID) -> list[tuple[UUID, str]]:
    """Free the instance's slots and places in line, in the caller's transaction; the waiters
    admitted in their place are handed to ``runner`` (its jobs, for ``QueuedRunner``)."""
    if not offers(storage, SlotKeeping):
        return []
    admitted = cast(SlotKeeping, storage).free(instance_id, lease=runner.lease)
    if admitted:
        runner._slots_freed(admitted, storage)
    return admitted
