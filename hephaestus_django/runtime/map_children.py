"""A map over child workflows: each item of a map step starts one child instance.

The map step (:func:`~hephaestus_django.core.maps.is_child_map`) does not run its items
itself: :func:`plan` checks that every item's child can be built and has the step wait
(:class:`~hephaestus_django.core.maps.StartItems`). The rest happens in the transactions of
writes, through :func:`~hephaestus_django.runtime.children.after_write`:

- the write that records the wait starts the first child of each *lane* (lane ``k`` holds the
  indexes ``k, k + in_flight, ...``, as :mod:`~hephaestus_django.runtime.map_jobs` lays them
  out), so at most ``in_flight`` children run at once, and none is started without the
  parent's wait committing with it;
- the write that records a child's end records its item under the parent's row lock (the
  child's results as the item's result; a failed or cancelled child as a failed attempt), then
  starts the next child of its lane (or, under the step's retry policy, a new child for the same
  item), and, when no item's child runs any more, ends the map step: ``completed`` with the list
  of results in item order, or the failure of the first item that failed for good. The parent
  is resumed by whichever transaction records the last end, exactly once: an item's end is
  recorded only while its row says a child runs for it, and the step is ended only while it
  waits.

The children carry their item in their link to the parent (``{"item": index}``), so the parent's
``runtime_metadata`` does not grow with the list.

A business key (:meth:`~hephaestus_django.core.maps.Map.child_key`) makes a map run again
(``retry()`` of the instance) adopt the child holding it instead of starting another; a
child adopted that already ended counts at once. A retry of a failed item starts its new child
without the key (the key names the child that failed) and at once, not after the policy's
backoff.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hephaestus_django.core import engine
from hephaestus_django.core.children import ENDED, PARENT_KEY, ParentLink
from hephaestus_django.core.engine import Activation, Executed
from hephaestus_django.core.errors import (
    ChildContextError,
    InstanceNotFound,
    InvalidInstanceError,
    MapItemError,
    SerializationError,
    StepOutcomeError,
)
from hephaestus_django.core.instance import Instance, evolve
from hephaestus_django.core.maps import Map, StartItems, is_child_map
from hephaestus_django.core.rewind import items_key
from hephaestus_django.core.status import Status
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.contract import MapItemJobs, MapItems
from hephaestus_django.runtime.document import encoded_state
from hephaestus_django.runtime.limits import check_state_size
from hephaestus_django.runtime.logs import about
from hephaestus_django.runtime.map_jobs import RecordedItemError, items_of, lanes_of, next_in_lane
from hephaestus_django.runtime.maps import _completed, _failed, _item_error
from hephaestus_django.runtime.workflow_pauses import held_at_start

if TYPE_CHECKING:
    from hephaestus_django.runtime.children import AfterWrite, Continuation
    from hephaestus_django.runtime.verbs import Runner

logger = logging.getLogger("hephaestus_django.children")

_ERROR_TEXT = 2_000


class ChildItemFailed(Exception):
    """An item's child ended failed or cancelled: the item's attempt failed."""


def plan(instance: Instance, activation: Activation, storage: object) -> Executed:
    """The map step's own run: wait for its items' children (started by the write that records
    the wait), or its result at once when there are none to wait for; its failure when an
    item's child cannot be built (nothing is started then)."""
    step = activation.step
    assert issubclass(step, Map)
    if not (isinstance(storage, MapItems) and isinstance(storage, MapItemJobs)):
        return _failed(
            step,
            StepOutcomeError(
                f"map step {step.__qualname__} of instance {instance.id} starts child "
                f"workflows, which {storage!r} cannot track (MapItems, MapItemJobs); use "
                f"DjangoStorage or InMemoryStorage"
            ),
        )
    try:
        items = items_of(instance, step)
        workflow = step.child_workflow()
        progress = storage.map_progress(instance.id, items_key(instance, step))
        for index, item in enumerate(items):
            state = progress.get(index)
            if state is None or not state.done:
                _check_child(instance, step, workflow, index, item)
    except Exception as error:
        logger.warning(
            "map step %s of instance %s cannot start its children: %s: %s",
            step.__qualname__,
            instance.id,
            type(error).__name__,
            error,
            exc_info=not isinstance(error, (StepOutcomeError, ChildContextError)),
            extra=about(instance, step=step),
        )
        return _failed(step, error)
    if not items:
        return _completed(step, [])
    if all(
        (state := progress.get(index)) is not None and state.done for index in range(len(items))
    ):
        return _completed(step, storage.map_results(instance.id, items_key(instance, step)))
    return Executed(step, outcome=StartItems())


def _check_child(
    instance: Instance, step: type[Map], workflow: type[Any], index: int, item: Any
) -> None:
    """Refuse, before anything is written, an item whose child could not be stored."""
    try:
        context, key = _built(instance, step, item)
        child = engine.start(
            engine.new_instance(workflow, context, metadata=_link(instance, step, index), key=key)
        )
        check_state_size(codec.dumps_encoded(encoded_state(child)), child.id)
    except (SerializationError, InvalidInstanceError, TypeError, ValueError) as error:
        raise ChildContextError(
            instance_id=instance.id,
            workflow=instance.workflow.__qualname__,
            step=step.__qualname__,
            child=workflow.__qualname__,
            problem=f"item {index}: {type(error).__name__}: {error}",
        ) from error


def _built(instance: Instance, step: type[Map], item: Any) -> tuple[dict[str, Any], str | None]:
    made = step()
    context: Mapping[str, Any] = made.child_context(item, instance.context)
    return dict(context), made.child_key(item, instance.context)


def _link(parent: Instance, step: type[Map], index: int) -> dict[str, dict[str, Any]]:
    return {PARENT_KEY: {"id": str(parent.id), "step": step.path(), "item": index}}


def start_waiting(
    runner: Runner, storage: Any, done: AfterWrite, before: Instance | None, after: Instance
) -> None:
    """Start the first child of each lane of the maps over child workflows the write made wait
    (inside its transaction); end such a map at once when no child of it runs after all."""
    for step, waiting in after.waiting_steps.items():
        if not (isinstance(step, type) and issubclass(step, Map) and is_child_map(step)):
            continue
        if waiting.attempt is not None or (before is not None and step in before.waiting_steps):
            continue
        _start_lanes(runner, storage, done, after, step)


def _start_lanes(
    runner: Runner, storage: Any, done: AfterWrite, parent: Instance, step: type[Map]
) -> None:
    path = items_key(parent, step)
    items = items_of(parent, step)
    storage.restart_map_items(parent.id, path)
    progress = storage.map_progress(parent.id, path)
    lanes = lanes_of(step, len(items))
    then: list[Continuation] = []
    error: MapItemError | None = None
    for lane in range(lanes):
        head = next(
            (
                index
                for index in range(lane, len(items), lanes)
                if (state := progress.get(index)) is None or not state.done
            ),
            None,
        )
        if head is not None and error is None:
            error = _lane(runner, storage, then, parent, step, items, head, None)
    done.then.extend(then)
    if storage.map_trouble(parent.id, path).running:
        return
    outcome = runner._wake_parent(
        parent.id, storage, lambda current: _join(storage, current, step, len(items), error)
    )
    done.after = outcome.after
    done.then.extend(outcome.then)


def item_ended(
    runner: Runner, storage: Any, done: AfterWrite, child: Instance, link: ParentLink
) -> None:
    """Record the end of ``child`` as its item's, under its parent's row lock and inside the
    transaction of the write that ended it; go on along its lane, and end the map when it was
    the last child running."""
    index = link.item
    assert index is not None
    then: list[Continuation] = []

    def deliver(parent: Instance) -> Instance:
        step = parent.workflow.graph.by_path.get(link.step)
        if step is None or not issubclass(step, Map) or not is_child_map(step):
            return parent
        waiting = parent.waiting_steps.get(step)
        if waiting is None or waiting.attempt is not None:
            return parent
        state = storage.map_item(parent.id, items_key(parent, step), index)
        if state is None or not state.running:
            return parent  # recorded already: an end counts once
        items = items_of(parent, step)
        error = _lane(runner, storage, then, parent, step, items, index, child)
        return _join(storage, parent, step, len(items), error)

    try:
        outcome = runner._wake_parent(link.id, storage, deliver)
    except InstanceNotFound:
        logger.warning(
            "child instance %s (%s) of item %d ended %s; its parent %s no longer exists "
            "(deleted or pruned), so nobody waits for it",
            child.id,
            child.workflow.__qualname__,
            index,
            child.status,
            link.id,
            extra=about(child),
        )
        return
    if done.after.id == link.id:
        done.after = outcome.after
    done.then.extend(outcome.then)
    done.then.extend(then)


def _lane(
    runner: Runner,
    storage: Any,
    then: list[Continuation],
    parent: Instance,
    step: type[Map],
    items: Sequence[Any],
    index: int,
    ended: Instance | None,
) -> MapItemError | None:
    """Go along the lane of item ``index`` from it: record its child's end (``ended``), or
    start its child (None); then the next item's. Stops at a child that runs, at the lane's
    end, or once an item failed for good (its failure is returned)."""
    path = items_key(parent, step)
    current: int | None = index
    while current is not None:
        if ended is None:
            try:
                ended = _start_item(runner, storage, then, parent, step, current, items[current])
            except ChildContextError as error:
                return _unbuildable(storage, parent, step, current, error)
            if ended is None:
                return None  # its child runs: its end goes on from here
        state = storage.map_item(parent.id, path, current)
        before = 0 if state is None or state.failed else state.attempts
        if ended.status is Status.COMPLETED:
            storage.record_map_item(
                parent.id,
                path,
                current,
                attempts=before,
                done=True,
                result=dict(ended.context.steps),
            )
            if storage.map_trouble(parent.id, path).failed:
                return None  # another item failed for good: no new child starts
            current = next_in_lane(storage, parent, step, current, len(items))
            ended = None
            continue
        failed = before + 1
        cause = ChildItemFailed(
            f"child instance {ended.id} ({ended.workflow.__qualname__}) of item {current} "
            f"ended {ended.status}"
            + (f": {ended.error.message}" if ended.error is not None else "")
        )
        policy = engine.retry_policy(parent.workflow, step)
        gives_up = policy is None or not policy.allows(failed, cause)
        logger.warning(
            "item %d of map step %s of instance %s (%s) failed (attempt %d%s): %s",
            current,
            step.__qualname__,
            parent.id,
            parent.workflow.__qualname__,
            failed,
            ", for good" if gives_up else "",
            cause,
            extra=about(parent, step=step),
        )
        storage.record_map_item(
            parent.id,
            path,
            current,
            attempts=failed,
            done=False,
            failed=gives_up,
            result=f"ChildItemFailed: {cause}"[:_ERROR_TEXT] if gives_up else None,
        )
        if gives_up:
            return _item_error(parent, step, current, failed, cause)
        try:
            ended = _start_item(
                runner, storage, then, parent, step, current, items[current], keyed=False
            )
        except ChildContextError as error:
            return _unbuildable(storage, parent, step, current, error)
        if ended is None:
            return None
    return None


def _unbuildable(
    storage: Any, parent: Instance, step: type[Map], index: int, error: ChildContextError
) -> MapItemError:
    """Item ``index``'s child cannot be built: the item fails for good (nothing of the child
    was written), rather than the transaction that wanted to start it."""
    state = storage.map_item(parent.id, items_key(parent, step), index)
    attempts = (0 if state is None or state.failed else state.attempts) + 1
    logger.warning(
        "item %d of map step %s of instance %s failed for good: %s",
        index,
        step.__qualname__,
        parent.id,
        error,
        extra=about(parent, step=step),
    )
    storage.record_map_item(
        parent.id,
        items_key(parent, step),
        index,
        attempts=attempts,
        done=False,
        failed=True,
        result=f"ChildContextError: {error}"[:_ERROR_TEXT],
    )
    return _item_error(parent, step, index, attempts, error)


def _start_item(
    runner: Runner,
    storage: Any,
    then: list[Continuation],
    parent: Instance,
    step: type[Map],
    index: int,
    item: Any,
    *,
    keyed: bool = True,
) -> Instance | None:
    """Start the child of item ``index`` (or adopt the one holding its key), marking the item
    running; the child when it has already ended (adopted), else None."""
    path = items_key(parent, step)
    if storage.mark_map_item(parent.id, path, index) is None:
        return None  # done, or its child runs already
    workflow = step.child_workflow()
    try:
        context, key = _built(parent, step, item)
    except Exception as error:  # checked when the map started: the item's code changed its mind
        raise ChildContextError(
            instance_id=parent.id,
            workflow=parent.workflow.__qualname__,
            step=step.__qualname__,
            child=workflow.__qualname__,
            problem=f"item {index}: {type(error).__name__}: {error}",
        ) from error
    if not keyed:
        key = None
    link = _link(parent, step, index)
    existing = _holder(storage, workflow.path(), key) if key is not None else None
    if existing is None:
        now = storage.now()
        child = held_at_start(
            engine.start(engine.new_instance(workflow, context, metadata=link, key=key)),
            storage,
            now,
        )
        then.extend(_flat(runner._begin_child(child, storage, now)))
        return None
    logger.info(
        "instance %s: item %d of map step %s found its child %s by the key %r instead of "
        "starting another",
        parent.id,
        index,
        step.__qualname__,
        existing.id,
        key,
        extra=about(parent, step=step),
    )
    adopted = storage.update(
        existing.id,
        lambda current: evolve(current, runtime_metadata={**current.runtime_metadata, **link}),
    )
    return adopted if adopted.status in ENDED else None


_queue = threading.local()


def _flat(continuations: list[Continuation]) -> list[Continuation]:
    """The continuations of a started child (``LocalRunner``: run it), run one after another
    by the outermost of them in this thread: a child's end starts the next child of its lane
    in the continuation of the child before, so running it there would nest a run per item of
    the lane, as deep as the list is long."""
    if not continuations:
        return []

    def run() -> None:
        pending: deque[Continuation] | None = getattr(_queue, "pending", None)
        if pending is not None:
            pending.extend(continuations)  # the outermost one runs them, once this returns
            return
        pending = _queue.pending = deque(continuations)
        try:
            while pending:
                pending.popleft()()
        finally:
            _queue.pending = None

    return [run]


def _holder(storage: Any, family: str, key: str) -> Instance | None:
    found: Instance
    for found in storage.query(key=key, limit=10):
        if found.workflow.path() == family:
            return found
    return None


def _join(
    storage: Any, parent: Instance, step: type[Map], count: int, error: MapItemError | None
) -> Instance:
    """End the map step when no item's child runs any more: its failure when an item failed
    for good, else ``completed`` with the results in item order; else ``parent`` unchanged."""
    waiting = parent.waiting_steps.get(step)
    if waiting is None or waiting.attempt is not None:
        return parent
    path = items_key(parent, step)
    trouble = storage.map_trouble(parent.id, path)
    if trouble.running:
        return parent
    now = storage.now()
    if trouble.failed:
        first = trouble.first_failed
        assert first is not None
        if error is not None and error.index == first:
            failure: BaseException = error
        else:
            attempts, text = storage.map_failure(parent.id, path, first)
            failure = _item_error(parent, step, first, attempts, RecordedItemError(text))
        return engine.fail_waiting(parent, step, failure, now=now)
    results = storage.map_results(parent.id, path)
    if len(results) != count:
        try:
            raise StepOutcomeError(
                f"map step {step.__qualname__} of instance {parent.id} has {len(results)} "
                f"results recorded for {count} items; retry the instance"
            )
        except StepOutcomeError as raised:
            return engine.fail_waiting(parent, step, raised, now=now)
    return engine.resume(parent, "completed", results, now=now, step=step)
