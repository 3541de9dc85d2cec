"""Pausing a whole workflow, or one version of it: new starts are stored paused, and the
instances that have not ended are paused with it.

A hold is a row of the storage (:class:`~hephaestus_django.runtime.contract.WorkflowPausing`),
shared by every process. What it does is the instance pause's (:mod:`~hephaestus_django.core.
pause`), applied to each instance of the workflow, marked as the workflow's (``"workflow":
true`` in its pause), so that releasing the hold unpauses those and leaves alone the instances an
operator paused one by one:

- ``pause_all`` writes the hold, then pauses every instance of the workflow (or version) that
  has not ended, each under its row lock: a step running then finishes and records its result,
  nothing after it runs (the instance stops at its next step boundary);
- a new instance of a held workflow (``start``, ``fork``, a child) is stored paused: it runs
  nothing until the hold is released;
- ``unpause_all`` removes the hold, then unpauses the instances it paused: their steps run (or
  are enqueued), their due timers fire at the worker's next pass.

The holds are read at each start through a per-process cache (:data:`CACHE_SECONDS`): a start
costs no statement more while it is fresh (the hot path's statement counts stay as they are).
A process whose cache is still stale when another pauses the workflow may start an instance
unpaused in that window; ``pause_all`` therefore pauses the instances again once the cache's
lifetime has passed, catching those.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from uuid import UUID

from hephaestus_django.core.errors import InstanceNotFound, InstanceNotPausableError
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.pause import is_paused, pause_of
from hephaestus_django.core.pause import pause as pause_instance
from hephaestus_django.core.status import Status
from hephaestus_django.runtime.contract import Storage, WorkflowPause, WorkflowPausing

CACHE_SECONDS = 1.0
"""How long a process trusts its reading of the holds before reading them again."""

NOT_ENDED = (Status.PENDING, Status.RUNNING, Status.WAITING)

_lock = threading.Lock()
_cache: dict[int, tuple[weakref.ref[Storage], float, tuple[WorkflowPause, ...]]] = {}
"""Per storage object (by id, with a weak reference: a storage that went is not kept alive,
and a new one given its id is told apart): when the reading expires, and what it read."""


def holds(storage: Storage, *, fresh: bool = False) -> tuple[WorkflowPause, ...]:
    """The holds of ``storage``, read at most once per :data:`CACHE_SECONDS` in this process
    (``fresh``: read now). Nothing for a storage that does not keep holds (asked again each
    time: such a storage is not cached)."""
    now = time.monotonic()
    with _lock:
        cached = _cache.get(id(storage))
        if not fresh and cached is not None and cached[0]() is storage and cached[1] > now:
            return cached[2]
    if not isinstance(storage, WorkflowPausing):  # asked on a miss only: a protocol check
        return ()
    found = tuple(storage.workflow_pauses())
    with _lock:
        for key in [key for key, entry in _cache.items() if entry[0]() is None]:
            del _cache[key]  # storages that went
        _cache[id(storage)] = (weakref.ref(storage), now + CACHE_SECONDS, found)
    return found


def forget(storage: Storage) -> None:
    """Drop this process's reading of ``storage``'s holds (after changing them here)."""
    with _lock:
        _cache.pop(id(storage), None)


def hold_of(found: tuple[WorkflowPause, ...], workflow: str, version: int) -> WorkflowPause | None:
    """The hold among ``found`` that covers ``version`` of ``workflow``, if any."""
    for hold in found:
        if hold.workflow == workflow and hold.version in (0, version):
            return hold
    return None


def held_at_start(instance: Instance, storage: Storage, now: datetime) -> Instance:
    """A new instance, paused when its workflow (or version) is held; as it is otherwise."""
    found = holds(storage)
    if not found:
        return instance
    hold = hold_of(found, instance.workflow.path(), instance.workflow_version)
    if hold is None:
        return instance
    return pause_instance(instance, now=now, reason=reason_of(hold), by_workflow=True)


def reason_of(hold: WorkflowPause) -> str:
    """The reason an instance paused by ``hold`` carries."""
    which = hold.workflow if not hold.version else f"{hold.workflow} version {hold.version}"
    return f"{which} is paused" + (f": {hold.reason}" if hold.reason else "")


def paused_by_workflow(instance: Instance) -> bool:
    """Whether ``instance``'s pause is a workflow hold's (not an operator's, one by one)."""
    found = pause_of(instance)
    return found is not None and found.get("workflow") is True


def instances_of(storage: Storage, workflow: str, version: int) -> Iterator[Instance]:
    """The instances of ``workflow`` (``version`` 0: every version) that have not ended."""
    filters: dict[str, Any] = {"workflow": workflow, "status_in": NOT_ENDED}
    if version:
        filters["workflow_version"] = version
    yield from storage.query(**filters)


def each(
    storage: Storage,
    workflow: str,
    version: int,
    wanted: Callable[[Instance], bool],
    act: Callable[[UUID], object],
) -> int:
    """Apply ``act`` to every instance of the workflow that has not ended and is ``wanted``;
    how many. An instance that ended or went meanwhile is skipped (``act`` raises for it)."""
    count = 0
    for instance in instances_of(storage, workflow, version):
        if not wanted(instance):
            continue
        try:
            act(instance.id)
        except (InstanceNotFound, InstanceNotPausableError):
            continue
        count += 1
    return count


def not_paused(instance: Instance) -> bool:
    """Whether ``instance`` is not paused (``pause_all`` pauses only those)."""
    return not is_paused(instance)
