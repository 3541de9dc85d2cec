"""Bulk operations: one verb (retry, cancel, rewind, ...) applied to every instance a filter
selects, in batches, resumable.

A bulk operation is a row of its storage (:class:`~hephaestus_django.runtime.contract.BulkTable`):
the operation's name, the filters (those of ``Workflow.list()``, plus ``since``/``until`` on
when the instance was made), the verb's options, a batch size, counters and a cursor (the
last instance id taken). :func:`run_batch` takes the next ``batch_size`` ids past the cursor
(a keyset on the id: a batch costs the same wherever it is in the table) and applies the verb
to each instance on its own: each is one locked write of one instance, never a lock on more.

Exactly once: an instance's outcome row is written in the same transaction as the verb's
write, and a batch never selects an instance that has an outcome already. A runner killed in
the middle of a batch leaves the instances it finished recorded, and the next runner goes on
with the others. A refusal (the verb raised, nothing written) is recorded on its own.

Who runs a batch: whoever holds the operation's lease for it (:meth:`BulkTable.claim_bulk`),
let go at the batch's end: ``manage.py hephaestus_bulk --wait`` runs every batch inline, a
worker one batch per pass, and on ``QueuedRunner`` a job per batch (each enqueuing the next).
A holder that dies mid-batch loses the lease after ``lease``; another takes over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from hephaestus_django.core.errors import (
    BulkOperationError,
    HephaestusError,
    InvalidQueryError,
    UnknownWorkflowError,
)
from hephaestus_django.core.instance import instance_key
from hephaestus_django.core.status import Status
from hephaestus_django.core.versions import VersionedDefinition
from hephaestus_django.core.workflow import WorkflowDefinition, workflow_registry
from hephaestus_django.runtime.contract import (
    BulkSpec,
    BulkState,
    BulkTable,
    Storage,
    atomic,
)
from hephaestus_django.runtime.filters import parse_filters, status_value
from hephaestus_django.runtime.verbs import Runner

DEFAULT_BATCH_SIZE = 500
"""Instances per batch unless told: a batch's outcomes and cursor commit together."""

MAX_BATCH_SIZE = 10_000

BULK_FILTERS = ("status", "status_in", "key", "tag", "workflow_version", "since", "until", "ids")
"""The filters a bulk operation takes: ``list()``'s, when the instance was made, and a list of
instance ids (the rows picked in the admin)."""

MAX_IDS = 10_000
"""Instance ids an ``ids`` filter lists, at the most (an admin page's selection)."""

Apply = Callable[[Runner, UUID, Storage, Any, Mapping[str, Any]], object]
"""``apply(runner, instance_id, storage, workflow or None, options)``."""


@dataclass(frozen=True)
class BulkVerb:
    """One operation of the registry: the runner verb it applies to each instance.

    ``verb`` is the name of the :class:`~hephaestus_django.runtime.verbs.Runner` method;
    when the runner has none (a verb of a newer release), the operation is refused as not
    available, before anything is written. ``options`` are the option names it takes;
    ``statuses`` the statuses selected when the filters name none.
    """

    name: str
    verb: str
    apply: Apply
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    statuses: tuple[str, ...] | None = None

    def available(self, runner: Runner | type[Runner] = Runner) -> bool:
        """Whether the runner offers the verb."""
        return callable(getattr(runner, self.verb, None))


def _retry(runner: Runner, key: UUID, storage: Storage, wf: Any, options: Any) -> object:
    return runner.retry(key, storage=storage, workflow=wf)


def _cancel(runner: Runner, key: UUID, storage: Storage, wf: Any, options: Any) -> object:
    return runner.cancel(
        key,
        storage=storage,
        workflow=wf,
        reason=options.get("reason"),
        compensate=bool(options.get("compensate", False)),
    )


def _rewind(runner: Runner, key: UUID, storage: Storage, wf: Any, options: Any) -> object:
    return runner.rewind(
        key,
        storage=storage,
        workflow=wf,
        to=options["to"],
        compensate=bool(options.get("compensate", False)),
    )


def _upgrade(runner: Runner, key: UUID, storage: Storage, wf: Any, options: Any) -> object:
    return runner.upgrade(key, storage=storage, workflow=wf, to=wf.starting(options["to_version"]))


def _compensate(runner: Runner, key: UUID, storage: Storage, wf: Any, options: Any) -> object:
    return runner.compensate(key, storage=storage, workflow=wf)


def _named(verb: str) -> Apply:
    """A verb taking only the instance (pause, unpause), called by name: it may be absent."""

    def apply(runner: Runner, key: UUID, storage: Storage, wf: Any, options: Any) -> object:
        return getattr(runner, verb)(key, storage=storage, workflow=wf)

    return apply


_ACTIVE = (Status.PENDING.value, Status.RUNNING.value, Status.WAITING.value)
_FAILED = (Status.FAILED.value,)

OPERATIONS: dict[str, BulkVerb] = {
    verb.name: verb
    for verb in (
        BulkVerb("retry", "retry", _retry, statuses=_FAILED),
        BulkVerb("cancel", "cancel", _cancel, options=("reason", "compensate"), statuses=_ACTIVE),
        BulkVerb("rewind", "rewind", _rewind, options=("to", "compensate"), required=("to",)),
        BulkVerb("upgrade", "upgrade", _upgrade, options=("to_version",), required=("to_version",)),
        BulkVerb("compensate", "compensate", _compensate, statuses=_FAILED),
        BulkVerb("pause", "pause", _named("pause"), statuses=_ACTIVE),
        BulkVerb("unpause", "unpause", _named("unpause")),
    )
}
"""Every bulk operation by name; a new verb plugs in with one entry."""


def operation(name: str) -> BulkVerb:
    """The registered operation ``name``; ``BulkOperationError`` naming the known ones."""
    try:
        return OPERATIONS[name]
    except (KeyError, TypeError):
        known = ", ".join(OPERATIONS)
        raise BulkOperationError(
            f"unknown bulk operation {name!r}; the operations are {known}"
        ) from None


def spec(
    name: str,
    workflow: type[WorkflowDefinition] | str | None,
    *,
    filters: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    runner: Runner | None = None,
) -> BulkSpec:
    """Check an operation's request and normalise it; raise before anything is written.

    ``workflow`` None means the instances of any workflow (with an ``ids`` filter only: the
    rows picked in the admin). ``BulkOperationError`` for an unknown or unavailable operation,
    a missing or unknown option, a bad batch size; ``InvalidQueryError`` for a bad filter.
    """
    verb = operation(name)
    if not verb.available(runner if runner is not None else Runner):
        raise BulkOperationError(
            f"the bulk operation {name!r} is not available: the runner has no {verb.verb}() verb"
        )
    if workflow is None and (name == "upgrade" or "ids" not in (filters or {})):
        raise BulkOperationError(
            f"bulk {name} needs a workflow (any workflow only with a list of ids, and never "
            "for an upgrade)"
        )
    cls = None if workflow is None else _workflow(workflow)
    given = dict(options or {})
    unknown = sorted(set(given) - set(verb.options))
    if unknown:
        takes = ", ".join(verb.options) or "none"
        raise BulkOperationError(
            f"bulk {name} got unknown option(s) {', '.join(unknown)}; it takes {takes}"
        )
    missing = [option for option in verb.required if given.get(option) in (None, "")]
    if missing:
        raise BulkOperationError(f"bulk {name} needs the option(s) {', '.join(missing)}")
    given = _checked_options(verb, cls, given)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise BulkOperationError(f"batch_size must be an int, not {batch_size!r}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise BulkOperationError(f"batch_size must be from 1 to {MAX_BATCH_SIZE}, not {batch_size}")
    chosen = _checked_filters(verb, dict(filters or {}))
    return BulkSpec(
        operation=name,
        workflow="" if cls is None else cls.path(),
        filters=chosen,
        options=given,
        batch_size=batch_size,
    )


def _workflow(workflow: type[WorkflowDefinition] | str) -> type[WorkflowDefinition]:
    if isinstance(workflow, type) and issubclass(workflow, WorkflowDefinition):
        return workflow.umbrella() or workflow
    if not isinstance(workflow, str):
        raise BulkOperationError(f"workflow must be a workflow class or its path, not {workflow!r}")
    try:
        found = workflow_registry.resolve(workflow)
    except UnknownWorkflowError as error:
        raise BulkOperationError(f"bulk operation on an unknown workflow: {error}") from None
    return found.umbrella() or found


def _checked_options(
    verb: BulkVerb, cls: type[WorkflowDefinition] | None, given: dict[str, Any]
) -> dict[str, Any]:
    if "compensate" in given and not isinstance(given["compensate"], bool):
        raise BulkOperationError(f"compensate must be True or False, not {given['compensate']!r}")
    if "reason" in given and given["reason"] is not None and not isinstance(given["reason"], str):
        raise BulkOperationError(f"reason must be a string, not {given['reason']!r}")
    if "to" in given:
        step = given["to"]
        name = step if isinstance(step, str) else getattr(step, "__name__", None)
        if not isinstance(name, str) or not name:
            raise BulkOperationError(f"to must be a step or its name, not {step!r}")
        given["to"] = name
    if "to_version" in given:
        version = given["to_version"]
        if cls is None or not issubclass(cls, VersionedDefinition):
            what = "any workflow" if cls is None else cls.path()
            raise BulkOperationError(
                f"{what} is not a versioned workflow: it has nothing to upgrade to"
            )
        try:
            given["to_version"] = cls.starting(version).version
        except HephaestusError as error:
            raise BulkOperationError(f"to_version: {error}") from None
    return given


def _checked_filters(verb: BulkVerb, filters: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(filters) - set(BULK_FILTERS))
    if unknown:
        raise InvalidQueryError(
            f"bulk operation got unknown filter(s) {', '.join(unknown)}; "
            f"the filters are {', '.join(BULK_FILTERS)}"
        )
    chosen: dict[str, Any] = {}
    if "status" in filters:
        chosen["status_in"] = [status_value(filters["status"])]
    if "status_in" in filters:
        listed = parse_filters({"status_in": filters["status_in"]}).statuses or frozenset()
        previous = set(chosen.get("status_in", listed))
        chosen["status_in"] = sorted(previous & set(listed))
    if "status_in" not in chosen and verb.statuses is not None:
        chosen["status_in"] = list(verb.statuses)
    for name in ("key", "tag", "workflow_version"):
        if name in filters and filters[name] is not None:
            chosen[name] = filters[name]
    parse_filters(chosen)  # the same checks as list()
    for name in ("since", "until"):
        value = filters.get(name)
        if value is None:
            continue
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise InvalidQueryError(f"{name} must be an aware datetime, not {value!r}")
        chosen[name] = value.isoformat()
    if "ids" in filters:
        chosen["ids"] = _ids(filters["ids"])
    return chosen


def _ids(given: object) -> list[str]:
    """A list of instance ids, as strings, each once, in order; malformed ones name none."""
    if isinstance(given, (str, bytes)) or not isinstance(given, (list, tuple, set, frozenset)):
        raise InvalidQueryError(f"ids must be a list of instance ids, not {given!r:.60}")
    if len(given) > MAX_IDS:
        raise InvalidQueryError(f"ids lists {len(given)} instances; at most {MAX_IDS}")
    keys = [instance_key(item) for item in given]
    return list(dict.fromkeys(str(key) for key in keys if key is not None))


def table(storage: Storage) -> BulkTable:
    """The storage as a :class:`BulkTable`; ``BulkOperationError`` when it keeps none."""
    if not isinstance(storage, BulkTable):
        raise BulkOperationError(
            f"the storage {storage!r} keeps no bulk operations: use a PostgreSQL storage"
        )
    return storage


def create(
    storage: Storage,
    request: BulkSpec,
    *,
    runner: Runner | None = None,
    alias: str | None = None,
) -> BulkState:
    """Store the bulk operation, pending: the worker runs it, a batch per pass. With a
    ``runner`` that enqueues jobs (``QueuedRunner.enqueue_bulk``) and the storage's ``alias``,
    the first batch's job is enqueued too, and each batch's job enqueues the next one's."""
    state = table(storage).create_bulk(request)
    enqueue = getattr(runner, "enqueue_bulk", None)
    if enqueue is not None and alias is not None:
        enqueue(state.id, alias)
    return state


def count(storage: Storage, request: BulkSpec) -> int:
    """How many instances the operation would take now (a dry run)."""
    return table(storage).count_bulk(request)


@dataclass(frozen=True)
class BatchReport:
    """What one batch did; ``state`` is the operation as it stands after."""

    state: BulkState
    done: int
    refused: int


def run_batch(
    storage: Storage,
    runner: Runner,
    *,
    owner: str,
    lease: timedelta,
    bulk_id: UUID | None = None,
) -> BatchReport | None:
    """Claim a bulk operation (``bulk_id``, or any that needs a runner) and run its next batch.

    None when there is nothing to claim (none pending, or another runner holds it).
    """
    keeper = table(storage)
    state = keeper.claim_bulk(owner, lease, bulk_id)
    if state is None:
        return None
    verb = OPERATIONS.get(state.operation)
    ids = keeper.bulk_batch(state)
    done = refused = 0
    for key in ids:
        if verb is None or not verb.available(runner):
            reason = f"the operation {state.operation!r} is not available on this runner"
            keeper.record_bulk_outcome(state.id, key, done=False, reason=reason)
            refused += 1
            continue
        try:
            workflow = workflow_registry.resolve(state.workflow) if state.workflow else None
        except UnknownWorkflowError as error:
            keeper.record_bulk_outcome(state.id, key, done=False, reason=str(error))
            refused += 1
            continue
        if _apply_one(keeper, storage, runner, verb, state, workflow, key):
            done += 1
        else:
            refused += 1
    after = keeper.finish_bulk_batch(state.id, owner, ids[-1] if ids else None)
    return BatchReport(after, done, refused)


def _apply_one(
    keeper: BulkTable,
    storage: Storage,
    runner: Runner,
    verb: BulkVerb,
    state: BulkState,
    workflow: type[WorkflowDefinition] | None,
    key: UUID,
) -> bool:
    """Apply the verb to one instance, its outcome recorded in the same transaction; a
    refusal (nothing written) recorded on its own. Whether it was done."""
    try:
        with atomic(storage):
            verb.apply(runner, key, storage, workflow, state.options)
            keeper.record_bulk_outcome(state.id, key, done=True, reason=None)
    except HephaestusError as error:
        reason = getattr(error, "reason", None) or str(error)
        keeper.record_bulk_outcome(
            state.id, key, done=False, reason=f"{type(error).__name__}: {reason}"
        )
        return False
    return True


def run_all(
    storage: Storage,
    runner: Runner,
    bulk_id: UUID,
    *,
    owner: str,
    lease: timedelta,
    on_batch: Callable[[BatchReport], None] | None = None,
) -> BulkState:
    """Run every remaining batch of ``bulk_id`` here (``hephaestus_bulk --wait``).

    ``BulkOperationError`` when another runner holds it.
    """
    while True:
        report = run_batch(storage, runner, owner=owner, lease=lease, bulk_id=bulk_id)
        if report is None:
            state = table(storage).bulk_state(bulk_id)
            if state.finished:
                return state
            raise BulkOperationError(
                f"bulk operation {bulk_id} is being run by {state.lease_owner}; "
                "see its progress with hephaestus_bulk --status"
            )
        if on_batch is not None:
            on_batch(report)
        if report.state.finished:
            return report.state
