"""Running a map step (:class:`~hephaestus_django.core.maps.Map`): its items, a bounded number
at a time, each under the step's retry policy and timeout, each result written on its own.

Whichever runner executes the map step (``LocalRunner`` in its wave, ``QueuedRunner`` in the
step's job) calls :func:`run_map` in place of the step's ``execute``. It reads the list
(``over``), then runs the items not done yet on at most ``in_flight`` threads of its own,
which take the next index from a shared cursor: so memory holds the list and ``in_flight``
items in flight, never a future per item. Each item's outcome is written to the storage's
:class:`~hephaestus_django.runtime.contract.MapItems` as it comes (one bounded write per item,
and one more per failed attempt); the instance itself is not written until the join, which is
the step's ordinary completion: the runner records the list of results, in item order, as the
step's result, in one write, once.

Recovery is the step's: if the worker dies, the lease lapses, the step runs again, and
:func:`run_map` skips the items recorded done, resuming each other item at the attempt it
had reached. An item runs at least once, like a step.

An item that fails for good stops the cursor: no new item starts, those in flight end (and are
recorded), and the step fails with :class:`~hephaestus_django.core.errors.MapItemError` (the
first such item's). ``retry()`` of the instance runs the step again: the items done are
skipped, the failed ones get their attempts anew.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from hephaestus_django.core import engine
from hephaestus_django.core.engine import Activation, Executed
from hephaestus_django.core.errors import MapItemError, SerializationError, StepOutcomeError
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.maps import Map, MapItem, is_child_map, is_map
from hephaestus_django.core.outcomes import Event
from hephaestus_django.core.rewind import items_key
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.asynchronous import awaited
from hephaestus_django.runtime.bounded import bounded, run_exit_hooks
from hephaestus_django.runtime.contract import MapItems, MapItemState
from hephaestus_django.runtime.execution import execute_step
from hephaestus_django.runtime.logs import about

logger = logging.getLogger("hephaestus_django.runner")

_ITEM_DEPTH = 4
"""How deep an item's result ends up in the state: the state, its steps, the list, the item."""

_ERROR_TEXT = 2_000
"""How much of a failed item's error is kept with it (its text, for the step's failure)."""

COMPLETED = "completed"
"""The event a map step emits once every item has run."""


def execute(
    instance: Instance, activation: Activation, storage: object, *, in_transaction: bool = False
) -> Executed:
    """Run one activation: a map step's items (:func:`run_map`), or any other step as usual."""
    if is_map(activation.step) and not activation.compensating:
        if is_child_map(activation.step):
            from hephaestus_django.runtime import map_children  # it builds on this module

            planned = map_children.plan(instance, activation, storage)
        else:
            planned = run_map(instance, activation, storage, in_transaction=in_transaction)
        # Of this generation: a rewind since it read the instance refuses it (engine.accepts).
        return replace(planned, rewinds=engine.rewinds_of(instance))
    return execute_step(instance, activation, in_transaction=in_transaction)


def run_item(instance: Instance, step: type[Map], index: int, item: Any) -> Any:
    """Run item ``index`` of map ``step`` once and return its result.

    ``step.each`` is a :class:`~hephaestus_django.core.maps.MapItem` class here: a map over
    child workflows starts its children instead (:mod:`~hephaestus_django.runtime.map_children`).
    """
    each = step.each
    assert isinstance(each, type)  # checked at definition
    assert issubclass(each, MapItem)
    return awaited(each().execute(item, instance.context))


def run_map(
    instance: Instance, activation: Activation, storage: object, *, in_transaction: bool = False
) -> Executed:
    """Run the items of the map step ``activation.step`` not done yet; the step's result.

    ``in_transaction``: the caller is inside a transaction the items must see, so they run in
    this thread, one after another (as a fan-out's branches do there).
    """
    step = activation.step
    assert issubclass(step, Map)
    if not isinstance(storage, MapItems):
        return _failed(
            step,
            StepOutcomeError(
                f"map step {step.__qualname__} of instance {instance.id} cannot run on "
                f"{storage!r}: the storage does not keep map items (MapItems); use "
                f"DjangoStorage or InMemoryStorage"
            ),
        )
    try:
        items = step().over(instance.context)
        if not isinstance(items, (list, tuple)):
            raise StepOutcomeError(
                f"over() of map step {step.__qualname__} returned {type(items).__name__}, "
                f"not a list or a tuple"
            )
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
    run = _MapRun(instance, step, items, storage, in_transaction)
    failure = run.run()
    if failure is not None:
        return Executed(step, error=failure)
    results = storage.map_results(instance.id, run.path)
    if len(results) != len(items):
        return _failed(
            step,
            StepOutcomeError(
                f"map step {step.__qualname__} of instance {instance.id} has {len(results)} "
                f"results recorded for {len(items)} items; retry the instance"
            ),
        )
    return _completed(step, results)


class _MapRun:
    """One run of a map's items: a cursor over the indexes not done, and the threads that take
    from it."""

    def __init__(
        self,
        instance: Instance,
        step: type[Map],
        items: Sequence[Any],
        storage: MapItems,
        in_transaction: bool,
    ) -> None:
        self.instance = instance
        self.step = step
        self.path = items_key(instance, step)
        self.items = items
        self.storage = storage
        self.in_transaction = in_transaction
        self.progress = storage.map_progress(instance.id, self.path)
        self._cursor = self._pending()
        self._lock = threading.Lock()
        self.failure: MapItemError | None = None
        self.crash: BaseException | None = None
        """What stopped a thread other than an item's failure (the database is down): raised
        to the runner once the other threads have ended."""

    def _pending(self) -> Iterator[int]:
        progress = self.progress
        return (index for index in range(len(self.items)) if not _done(progress.get(index)))

    def run(self) -> MapItemError | None:
        remaining = len(self.items) - sum(1 for state in self.progress.values() if state.done)
        threads = min(self.step.in_flight, remaining)
        if self.in_transaction or threads <= 1:
            self._take(own_thread=False)
        else:
            workers = [
                threading.Thread(
                    target=contextvars.copy_context().run,
                    args=(self._take,),
                    name=f"hephaestus-map-{index}",
                    daemon=True,
                )
                for index in range(threads)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        if self.crash is not None:
            raise self.crash
        return self.failure

    def _next(self) -> int | None:
        with self._lock:
            if self.failure is not None or self.crash is not None:
                return None
            return next(self._cursor, None)

    def _take(self, *, own_thread: bool = True) -> None:
        try:
            while (index := self._next()) is not None:
                failure = self._item(index)
                if failure is not None:
                    with self._lock:
                        if self.failure is None:
                            self.failure = failure
        except BaseException as error:
            with self._lock:
                if self.crash is None:
                    self.crash = error
        finally:
            if own_thread:
                run_exit_hooks()  # the thread's database connection, closed

    def _item(self, index: int) -> MapItemError | None:
        """Run item ``index`` until it is done or fails for good; its failure, if it does."""
        ended = run_item_to_end(
            self.instance,
            self.step,
            index,
            self.items[index],
            self.storage,
            self.progress.get(index),
            in_transaction=self.in_transaction,
        )
        assert not isinstance(ended, RetryLater)  # not deferred: its retries slept here
        return ended


def run_item_to_end(
    instance: Instance,
    step: type[Map],
    index: int,
    item: Any,
    storage: MapItems,
    state: MapItemState | None,
    *,
    in_transaction: bool = False,
    defer: bool = False,
) -> MapItemError | RetryLater | None:
    """Run item ``index`` under the step's retry policy and timeout until it is done or fails
    for good, recording each failed attempt and the end (one bounded write each); its failure,
    if it fails for good. ``state`` is where the item stood: it resumes at the attempt it had
    reached, or anew if it had failed for good (the instance was retried).

    ``defer``: a retry that waits (its policy's backoff) is not slept here; the failed attempt
    is recorded and :class:`RetryLater` returned, for the caller to run the item again later
    (``QueuedRunner``: a job of the item scheduled at that time, a durable timer)."""
    policy = engine.retry_policy(instance.workflow, step)
    timeout = engine.step_timeout(instance.workflow, step)
    path = items_key(instance, step)
    result_path = codec.format_path(codec.format_path("context.steps", step.step_key), index)
    failed = state.attempts if state is not None else 0
    if (state is not None and state.failed) or failed >= (
        policy.max_attempts if policy is not None else 1
    ):
        failed = 0  # it failed for good before, and the instance was retried: anew
    while True:
        try:
            result = bounded(
                lambda: run_item(instance, step, index, item),
                timeout,
                instance,
                step,
                in_transaction=in_transaction,
            )
            codec.encode(result, path=result_path, depth=_ITEM_DEPTH)
        except Exception as error:
            failed += 1
            expected = isinstance(error, _expected(step))
            gives_up = expected or policy is None or not policy.allows(failed, error)
            logger.warning(
                "item %d of map step %s of instance %s (%s) failed (attempt %d%s): %s: %s",
                index,
                step.__qualname__,
                instance.id,
                instance.workflow.__qualname__,
                failed,
                ", for good" if gives_up else "",
                type(error).__name__,
                error,
                exc_info=not (expected or isinstance(error, SerializationError)),
                extra=about(instance, step=step),
            )
            storage.record_map_item(
                instance.id,
                path,
                index,
                attempts=failed,
                done=False,
                failed=gives_up,
                result=f"{type(error).__name__}: {error}"[:_ERROR_TEXT] if gives_up else None,
            )
            if gives_up:
                return _item_error(instance, step, index, failed, error)
            assert policy is not None
            delay = policy.delay(failed, random.random())
            if defer and delay > timedelta(0):
                return RetryLater(delay)
            time.sleep(delay.total_seconds())
            continue
        storage.record_map_item(instance.id, path, index, attempts=failed, done=True, result=result)
        return None


@dataclass(frozen=True)
class RetryLater:
    """An item's attempt failed and its retry waits ``delay`` (:func:`run_item_to_end` with
    ``defer``): its failed attempt is recorded, nothing else."""

    delay: timedelta


def _done(state: MapItemState | None) -> bool:
    return state is not None and state.done


def _expected(step: type[Map]) -> tuple[type[Exception], ...]:
    each = step.each
    return each.expected_errors if isinstance(each, type) and issubclass(each, MapItem) else ()


def _item_error(
    instance: Instance, step: type[Map], index: int, attempts: int, error: BaseException
) -> MapItemError:
    """The step's failure for item ``index``, raised once so that it carries a traceback (its
    cause's, the item's error, is printed with it)."""
    try:
        raise MapItemError(
            instance_id=instance.id,
            workflow=instance.workflow.__qualname__,
            step=step.__qualname__,
            index=index,
            attempts=attempts,
            error=error,
        ) from error
    except MapItemError as raised:
        return raised


def _completed(step: type[Map], results: list[Any]) -> Executed:
    """The map's join: ``completed``, with the list of results (the engine stores a map's
    result as it is, not as a mapping as it would a step's)."""
    updates: Any = results
    return Executed(step, outcome=Event(COMPLETED, updates=updates))


def _failed(step: type[Map], error: BaseException) -> Executed:
    if error.__traceback__ is None:
        try:
            raise error
        except BaseException as raised:
            error = raised
    return Executed(step, error=error)
