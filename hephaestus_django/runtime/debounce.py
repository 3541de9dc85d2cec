"""Debounced starts: a burst of starts with one business key becomes one instance.

``start(context, key=k, debounce=...)`` (:class:`~hephaestus_django.core.debounce.Debounce`)
writes no instance. It upserts one *pending start* per workflow and key, in one statement
(:meth:`DebounceTable.push_start`): the first makes it, with the id the instance will have and
a due time one window ahead; each later one replaces its context and metadata with its own
(the last start wins) and pushes the due time back to a window from now, but never past
``max_wait`` after the first. Every caller gets the same id back. Because the storage does
this in one atomic statement, any number of processes may push the same key at once.

The worker starts what is due (:func:`start_due`): in one transaction it takes the pending
start (a delete of the row, only if it is still due and still that id) and writes the instance
with that id, through the runner's in-transaction start (the one a parent uses for a child), so
a pending start becomes an instance exactly once, however many workers race: the delete lets
one of them through, and a worker dying before its commit leaves the row for the next pass.
With :class:`~hephaestus_django.runtime.LocalRunner` the worker then runs the instance; with
:class:`~hephaestus_django.runtime.QueuedRunner` its first job is enqueued with the commit.

A start pushed while the worker takes the row waits for that transaction, then finds no row and
opens a new window, with a new id. A pending start whose business key is held, when due, by
another instance in the workflow's ``key_scope`` is dropped (logged at warning, naming the
holder), as ``start(key=...)`` would return the holder instead of starting.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from hephaestus_django.core import engine
from hephaestus_django.core.debounce import Debounce, debounce_of
from hephaestus_django.core.errors import (
    DebounceError,
    DuplicateInstanceError,
    HephaestusError,
    StaleInstanceError,
)
from hephaestus_django.core.workflow import WorkflowDefinition, workflow_registry
from hephaestus_django.runtime import codec
from hephaestus_django.runtime.admission import with_priority
from hephaestus_django.runtime.contract import Storage, atomic

logger = logging.getLogger("hephaestus_django.debounce")


@dataclass(frozen=True)
class PendingStart:
    """A debounced start not made yet: what the instance will be started with."""

    workflow: str
    """The workflow's stored path (a versioned workflow's umbrella)."""
    key: str
    instance_id: uuid.UUID
    version: int
    context: codec.JSON
    """The last start's context, encoded (:func:`codec.encode`)."""
    metadata: codec.JSON
    """The last start's runtime metadata (with its priority), encoded."""


@dataclass(frozen=True)
class Debounced:
    """What a debounced start returns: the id the instance will have, and when it is due now
    (later starts with the same key may push that back)."""

    id: uuid.UUID
    due_at: datetime


@runtime_checkable
class DebounceTable(Protocol):
    """The optional part of the storage contract that keeps pending starts, one per workflow
    and business key, shared by every process."""

    def push_start(
        self, pending: PendingStart, window: timedelta, max_wait: timedelta | None
    ) -> Debounced:
        """Make the pending start of ``pending.workflow`` and ``pending.key`` (with
        ``pending.instance_id``, due a window from now), or replace the one there's context,
        metadata and version with ``pending``'s and push its due time to a window from now,
        never past ``max_wait`` after the first push. Atomic: one record per key, whatever
        the concurrency. Returns the record's id and due time."""
        ...

    def due_starts(self, limit: int) -> list[PendingStart]:
        """Up to ``limit`` pending starts due by the storage's now, the earliest first."""
        ...

    def take_start(self, workflow: str, key: str, instance_id: uuid.UUID) -> PendingStart | None:
        """Remove the pending start of ``workflow`` and ``key`` if it is still ``instance_id``'s
        and due; return it as it stood (None when pushed back, taken or gone). Inside the
        caller's transaction, so the instance written in the same one makes it exactly once."""
        ...


def push(
    workflow: type[WorkflowDefinition],
    context: Mapping[str, Any] | None,
    *,
    storage: Storage,
    key: str | None,
    debounce: Debounce | timedelta | float,
    metadata: Mapping[str, Any] | None = None,
    priority: int = 0,
) -> Debounced:
    """Record a debounced start of ``workflow`` (see the module). Everything is checked first,
    as a start would check it (the key, the context, the metadata, the priority); bad input
    writes nothing."""
    spec = debounce_of(debounce)
    where = f"a debounced start of {workflow.__qualname__}"
    if key is None:
        raise DebounceError(
            f"{where} needs a business key: the starts with one key are what coalesce; pass "
            "key=... (e.g. key=f'customer-{customer.pk}')"
        )
    table = _table(storage, where)
    # Built as a start builds it, so what a start refuses is refused now, not at the worker.
    instance = engine.new_instance(
        workflow, context, id=uuid.uuid4(), metadata=with_priority(metadata, priority), key=key
    )
    pending = PendingStart(
        workflow=workflow.path(),
        key=key,
        instance_id=instance.id,
        version=workflow.version,
        context=codec.encode(instance.context.initial, path="context"),
        metadata=codec.encode(instance.runtime_metadata, path="metadata"),
    )
    return table.push_start(pending, spec.window, spec.max_wait)


def start_due(storage: Storage, begin: Begin, *, limit: int = 100) -> list[uuid.UUID]:
    """Start the pending starts due in ``storage`` (at most ``limit``), each exactly once, with
    ``begin`` (a runner's in-transaction start); the ids of the instances started."""
    if not isinstance(storage, DebounceTable):
        return []
    started = []
    for due in storage.due_starts(limit):
        then: list[Callable[[], Any]] = []
        with atomic(storage):
            taken = storage.take_start(due.workflow, due.key, due.instance_id)
            if taken is None:  # pushed back since, or another worker took it
                continue
            try:
                with atomic(storage):  # the row stays taken if the instance cannot be written
                    then = begin(_instance(taken), storage, storage.now())
            except (DuplicateInstanceError, StaleInstanceError) as error:
                holder = getattr(error, "existing_id", None)
                logger.warning(
                    "the debounced start of %s with key %r was dropped: %s",
                    taken.workflow,
                    taken.key,
                    f"instance {holder} holds the key" if holder else error,
                )
                continue
            except HephaestusError:
                logger.exception(
                    "the debounced start of %s with key %r failed and was dropped",
                    taken.workflow,
                    taken.key,
                )
                continue
        started.append(taken.instance_id)
        for step in then:
            step()
    return started


Begin = Callable[[Any, Storage, datetime], list[Callable[[], Any]]]
"""A runner's ``_begin_child``: write a started instance inside the caller's transaction and
return what to run once it committed."""


def _instance(pending: PendingStart) -> Any:
    definition = workflow_registry.resolve(pending.workflow).starting(pending.version)
    context = codec.decode(pending.context, path="context")
    metadata = codec.decode(pending.metadata, path="metadata")
    return engine.start(
        engine.new_instance(
            definition,
            context,  # type: ignore[arg-type]
            id=pending.instance_id,
            metadata=metadata,  # type: ignore[arg-type]
            key=pending.key,
        )
    )


class PendingStarts:
    """:class:`DebounceTable` in memory, for :class:`~hephaestus_django.runtime.InMemoryStorage`
    (which serializes the calls under its lock and gives its clock's now)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[PendingStart, datetime, datetime, datetime | None]]
        self._rows = {}

    def push(
        self, pending: PendingStart, window: timedelta, max_wait: timedelta | None, now: datetime
    ) -> Debounced:
        found = self._rows.get((pending.workflow, pending.key))
        if found is None:
            first, deadline = now, None if max_wait is None else now + max_wait
            kept = pending
        else:
            first, deadline = found[1], found[3]
            if max_wait is not None:
                deadline = min(d for d in (deadline, first + max_wait) if d is not None)
            kept = PendingStart(
                pending.workflow,
                pending.key,
                found[0].instance_id,
                pending.version,
                pending.context,
                pending.metadata,
            )
        due = now + window if deadline is None else min(now + window, deadline)
        self._rows[(pending.workflow, pending.key)] = (kept, first, due, deadline)
        return Debounced(kept.instance_id, due)

    def due(self, limit: int, now: datetime) -> list[PendingStart]:
        rows = sorted((row for row in self._rows.values() if row[2] <= now), key=lambda r: r[2])
        return [row[0] for row in rows[:limit]]

    def take(
        self, workflow: str, key: str, instance_id: uuid.UUID, now: datetime
    ) -> PendingStart | None:
        found = self._rows.get((workflow, key))
        if found is None or found[0].instance_id != instance_id or found[2] > now:
            return None
        del self._rows[(workflow, key)]
        return found[0]


def _table(storage: Storage, where: str) -> DebounceTable:
    if not isinstance(storage, DebounceTable):
        raise DebounceError(
            f"{where}: storage {storage!r} keeps no pending starts; use DjangoStorage or "
            "InMemoryStorage"
        )
    return storage


__all__ = [
    "DebounceTable",
    "Debounced",
    "PendingStart",
    "PendingStarts",
    "push",
    "start_due",
]
