"""Each item of a map step as a job of its own, on ``QueuedRunner``.

The map step's job (its *head*) reads the list, makes the items not done runnable again
(:meth:`~hephaestus_django.runtime.contract.MapItemJobs.restart_map_items`), and enqueues one
item job per *lane*: lane ``k`` holds the indexes ``k, k + in_flight, k + 2 * in_flight, ...``,
and its job for one index, once that item has ended, enqueues the job of the next index of its
lane not done yet. So at most ``in_flight`` item jobs are queued or running for a map at any
time, without a shared cursor to contend on, and without a job per item enqueued up front (a
queue of 10,000 jobs for a list of 10,000).

An item job marks its item running (a second job of it finds the mark and does nothing), runs
it under the step's retry policy and timeout (:func:`~hephaestus_django.runtime.maps.
run_item_to_end`, which records the item's row: the instance is not written). If its lane goes
on and no item failed for good, the map cannot have ended: it enqueues the lane's next job, and
neither locks nor reads the instance. Else (its lane ends here, or an item failed) it *joins*:
under the instance's row lock it reads the items failed or running (a probe of a partial index,
a few rows) and decides, in that transaction, whether the map step has ended (:func:`join`).
The step completes when the last job of a lane finds every item done (the lock orders the
lanes' joins, so the last one sees all the others' rows); it fails once an item
failed for good and no item runs any more. The step's result and the jobs of the steps after
it commit together, exactly once: a second join finds the step no longer runnable.

Recovery is the step's: the item jobs renew the instance's queue lease while they run; a worker
killed mid-item leaves its item marked running and the lease to lapse; the sweep then enqueues
the map step again, whose head clears the marks and enqueues the lanes again (those whose job
still waits in the queue keep it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hephaestus_django.core import engine
from hephaestus_django.core.engine import Activation, Executed
from hephaestus_django.core.errors import MapItemError, StepOutcomeError
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.maps import Map, is_child_map, is_map
from hephaestus_django.core.rewind import items_key
from hephaestus_django.core.steps import Step
from hephaestus_django.runtime.contract import MapItemJobs, MapItems
from hephaestus_django.runtime.logs import about
from hephaestus_django.runtime.maps import _completed, _failed, _item_error

logger = logging.getLogger("hephaestus_django.runner")


class RecordedItemError(Exception):
    """The error of an item that failed for good in another job, as its row recorded it (the
    exception itself died with that job)."""


def runs_as_jobs(step: type[Step], instance: Instance, storage: object) -> bool:
    """Whether ``step`` of ``instance`` runs its items as jobs: a map step doing its work (not
    compensating) on a storage that keeps map items as jobs need."""
    return (
        is_map(step)
        and not is_child_map(step)  # its items are child instances, started by the writes
        and not instance.compensating
        and isinstance(storage, MapItems)
        and isinstance(storage, MapItemJobs)
    )


def items_of(instance: Instance, step: type[Map]) -> Sequence[Any]:
    """The list the map step maps over, read from the instance's context; ``StepOutcomeError``
    when ``over`` returns something else than a list or a tuple."""
    items = step().over(instance.context)
    if not isinstance(items, (list, tuple)):
        raise StepOutcomeError(
            f"over() of map step {step.__qualname__} returned {type(items).__name__}, "
            f"not a list or a tuple"
        )
    return items


def plan(instance: Instance, activation: Activation, storage: Any) -> Executed | list[int]:
    """What the map step's head does: the step's result when it has none to wait for (the list
    could not be read, is empty, or every item is done), else the first index not done of each
    lane, whose jobs the runner enqueues."""
    step = activation.step
    assert issubclass(step, Map)
    try:
        items = items_of(instance, step)
    except Exception as error:
        logger.warning(
            "map step %s of instance %s could not read its items: %s: %s",
            step.__qualname__,
            instance.id,
            type(error).__name__,
            error,
            exc_info=not isinstance(error, StepOutcomeError),
            extra=about(instance, step=step),
        )
        return _failed(step, error)
    if not items:
        return _completed(step, [])
    path = items_key(instance, step)
    storage.restart_map_items(instance.id, path)
    progress = storage.map_progress(instance.id, path)
    lanes = min(step.in_flight, len(items))
    heads: list[int] = []
    for lane in range(lanes):
        head = next(
            (
                index
                for index in range(lane, len(items), lanes)
                if not (state := progress.get(index)) or not state.done
            ),
            None,
        )
        if head is not None:
            heads.append(head)
    if not heads:
        joined = _joined(instance, step, storage, len(items))
        if joined is None:  # the records say done, the count says not: a retry reads anew
            return _failed(
                step,
                StepOutcomeError(
                    f"map step {step.__qualname__} of instance {instance.id} has its items "
                    f"recorded done but not counted so; retry the instance"
                ),
            )
        return joined
    return heads


def lanes_of(step: type[Map], count: int) -> int:
    """How many lanes a map of ``count`` items has: its ``in_flight``, or fewer items."""
    return max(1, min(step.in_flight, count))


def next_in_lane(
    storage: Any, instance: Instance, step: type[Map], index: int, count: int
) -> int | None:
    """The next index after ``index`` in its lane that is not done (None at the lane's end): a
    read per index skipped, which only a map run before (and cut off) has."""
    path = items_key(instance, step)
    stride = lanes_of(step, count)
    following = index + stride
    while following < count:
        state = storage.map_item(instance.id, path, following)
        if state is None or not state.done:
            return following
        following += stride
    return None


def join(
    storage: Any,
    current: Instance,
    step: type[Map],
    count: int,
    *,
    lane_ended: bool,
    error: MapItemError | None = None,
) -> Executed | None:
    """Whether map ``step`` has ended, decided under ``current``'s row lock: its failure once an
    item failed for good and none runs any more; its completion when a lane ended and every
    item is done; else None (the other lanes decide when they end)."""
    if step not in engine.runnable_steps(current) or current.compensating:
        return None
    path = items_key(current, step)
    trouble = storage.map_trouble(current.id, path)
    if trouble.failed:
        if trouble.running:
            return None  # the items in flight end first; the last of them fails the step
        first = trouble.first_failed
        if error is not None and error.index == first:
            return Executed(step, error=error)
        attempts, text = storage.map_failure(current.id, path, first)
        failure = _item_error(current, step, first, attempts, RecordedItemError(text))
        return Executed(step, error=failure)
    if not lane_ended:
        return None
    return _joined(current, step, storage, count)


def _joined(instance: Instance, step: type[Map], storage: Any, count: int) -> Executed | None:
    """The map's completion when all its ``count`` items are done, else None."""
    path = items_key(instance, step)
    if storage.map_counts(instance.id, path).done < count:
        return None
    results = storage.map_results(instance.id, path)
    if len(results) != count:  # the list changed length since the items ran
        return _failed(
            step,
            StepOutcomeError(
                f"map step {step.__qualname__} of instance {instance.id} has {len(results)} "
                f"results recorded for {count} items; retry the instance"
            ),
        )
    return _completed(step, results)
