"""The one exception hierarchy of hephaestus-django.

Every error a caller can act on derives from :class:`HephaestusError`, so
``except HephaestusError`` is enough to keep a worker loop alive. Each message
names the thing that went wrong (workflow, step, instance id, JSON path) and
what to do about it; the same facts are kept as attributes for code that needs
them.

Configuration errors of the Django layer are *not* part of this hierarchy: they
are reported by Django system checks and subclass ``ImproperlyConfigured``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID


class HephaestusError(Exception):
    """Base class of every hephaestus-django error."""


class WorkflowDefinitionError(HephaestusError):
    """A workflow class breaks a rule of the workflow model.

    Raised while the class statement runs, so a broken workflow never gets
    imported. ``rule`` is a short, stable identifier of the broken rule (for
    example ``"cycle"`` or ``"unreachable-step"``) that tests and tools can
    match on; ``steps`` names the offending steps.
    """

    def __init__(
        self, workflow: str, rule: str, message: str, *, steps: Iterable[str] = ()
    ) -> None:
        self.workflow = workflow
        self.rule = rule
        self.steps = tuple(steps)
        super().__init__(f"{workflow}: {message}")


class StepDefinitionError(HephaestusError):
    """A step class is malformed (bad ``events``, ``step_key``, config or retry policy).

    ``step`` is the step's qualified name and ``rule`` a stable identifier of the broken
    rule (``"malformed-retry"``), when the error says which.
    """

    def __init__(self, message: str, *, step: str | None = None, rule: str | None = None):
        self.step = step
        self.rule = rule
        super().__init__(message)


class ConcurrencyKeyError(HephaestusError):
    """A step's concurrency key function raised, or returned something other than a
    non-empty string.

    Recorded on the instance as the step's failure; other instances are not affected.
    """


class UnknownWorkflowError(HephaestusError):
    """A stored name does not match any registered workflow or step class.

    Names are resolved through the registry only; nothing is imported because
    a database row says so. Make sure the module defining the class is imported
    (for Django: the app's ``workflows`` module is autodiscovered).
    """

    def __init__(
        self,
        name: str,
        *,
        kind: str = "workflow",
        instance_id: UUID | None = None,
        version: int | None = None,
        known_versions: Iterable[int] = (),
    ):
        self.name = name
        self.kind = kind
        self.instance_id = instance_id
        self.version = version
        """For a versioned workflow: the version that is not registered (``name`` is)."""
        where = f" (instance {instance_id})" if instance_id is not None else ""
        if version is None:
            super().__init__(
                f"no {kind} is registered as {name!r}{where}; import the module that defines "
                f"it (in Django, put it in an installed app's workflows.py)"
            )
            return
        known = ", ".join(map(str, sorted(known_versions))) or "none"
        super().__init__(
            f"workflow {name!r} has no version {version} registered{where}; its versions are "
            f"{known}: put the version class back in its umbrella's versions (upgrade the "
            f"instances before removing a version), or delete the instance"
        )


class InvalidInstanceError(HephaestusError, ValueError):
    """An instance was built from values the model does not allow."""


class EngineError(HephaestusError):
    """An operation does not fit the instance's current state; nothing changed."""

    def __init__(self, message: str, *, instance_id: UUID | None = None) -> None:
        self.instance_id = instance_id
        super().__init__(message)


class InstanceNotWaitingError(EngineError):
    """``resume`` was called on an instance that is not waiting."""


class UnexpectedEventError(EngineError):
    """``resume`` named an event that no waiting step declares (or is ambiguous)."""


class UpgradeError(EngineError):
    """An instance cannot be upgraded to the version asked for; nothing changed.

    ``workflow`` is the workflow's dotted path, ``from_version`` and ``to_version`` the
    versions, ``step`` the step that stands in the way (when one does) and ``reason`` why.
    """

    def __init__(
        self,
        *,
        instance_id: UUID | None,
        workflow: str,
        from_version: int,
        to_version: int,
        reason: str,
        step: str | None = None,
    ) -> None:
        self.workflow = workflow
        self.from_version = from_version
        self.to_version = to_version
        self.step = step
        self.reason = reason
        super().__init__(
            f"instance {instance_id} of {workflow} cannot be upgraded from version "
            f"{from_version} to {to_version}: {reason} (nothing was changed)",
            instance_id=instance_id,
        )


class InstanceNotCancellableError(EngineError):
    """``cancel`` was called on an instance that has ended (completed, failed, cancelled) or
    is already undoing its steps; nothing changed."""


class InstanceNotPausableError(EngineError):
    """``pause`` was called on an instance that has ended (completed, failed, cancelled):
    there is nothing of it left to hold; nothing changed."""


class InstanceNotCompensableError(EngineError):
    """``compensate`` was called on an instance that has not failed, or whose steps were
    compensated already, or that has no completed step to undo; nothing changed."""


class RewindError(EngineError):
    """An instance cannot be rewound (or forked) to the step asked for; nothing changed.

    ``step`` names the step asked for (its dotted path or what the caller gave) and ``reason``
    says why: the step was never reached, the instance's version has no such step, the
    instance is in a state a rewind does not apply to.
    """

    def __init__(
        self,
        *,
        instance_id: UUID,
        workflow: str,
        step: str,
        reason: str,
        verb: str = "rewound",
    ) -> None:
        self.workflow = workflow
        self.step = step
        self.reason = reason
        super().__init__(
            f"instance {instance_id} of {workflow} cannot be {verb} to step {step}: {reason} "
            f"(nothing was changed)",
            instance_id=instance_id,
        )


class StepOutcomeError(HephaestusError):
    """A step returned something that is not a valid outcome.

    The runner records it as that step's failure, like any exception the step
    raises.
    """


class MapItemError(HephaestusError):
    """An item of a map step failed for good (its attempts used up, or an expected error): the
    map step fails with it once the items in flight have ended. Its cause is the item's error.

    ``index`` is the item's position in the list, ``attempts`` how many times it ran.
    """

    def __init__(
        self,
        *,
        instance_id: UUID,
        workflow: str,
        step: str,
        index: int,
        attempts: int,
        error: BaseException,
    ) -> None:
        self.instance_id = instance_id
        self.workflow = workflow
        self.step = step
        self.index = index
        self.attempts = attempts
        super().__init__(
            f"item {index} of map step {step} in instance {instance_id} ({workflow}) failed "
            f"for good after {attempts} attempt(s): {type(error).__name__}: {error}; fix the "
            f"cause and retry the instance (the items done are not run again)"
        )


class ChildContextError(HephaestusError):
    """A ``Child`` step could not build a child that can be stored: its ``child_context`` (or
    ``child_key``) raised, or returned a context the storage would refuse (not encodable, or
    over ``HEPHAESTUS["MAX_STATE_BYTES"]``).

    Recorded as the step's failure, under its retry policy, before anything is written: the
    parent's transition is never refused half-way. ``instance_id`` and ``workflow`` name the
    parent, ``step`` its step, ``child`` the child workflow (qualified names); the error's
    cause is the original one.
    """

    def __init__(
        self, *, instance_id: UUID, workflow: str, step: str, child: str, problem: str
    ) -> None:
        self.instance_id = instance_id
        self.workflow = workflow
        self.step = step
        self.child = child
        self.problem = problem
        super().__init__(
            f"step {step} of instance {instance_id} ({workflow}) cannot start its child "
            f"workflow {child}: {problem}; fix the step's child_context() so that it returns "
            f"a small dict of storable values (nothing was written, the child was not started)"
        )


class StepTimeout(HephaestusError, TimeoutError):
    """An attempt of a step ran longer than its ``timeout``: it counts as failed.

    Recorded as the attempt's error, like an exception the step raised, so the step's
    retry policy attempts it again (it is an ``Exception``, and a ``TimeoutError``) or the
    instance fails. Python cannot stop a running thread: the overrunning call is abandoned,
    left to finish in the background, and whatever it returns or raises then is discarded.
    ``timeout`` is the bound it overran; ``step`` and ``workflow`` are qualified names.
    """

    def __init__(self, *, instance_id: UUID, workflow: str, step: str, timeout: timedelta) -> None:
        self.instance_id = instance_id
        self.workflow = workflow
        self.step = step
        self.timeout = timeout
        super().__init__(
            f"step {step} of instance {instance_id} ({workflow}) ran longer than its timeout "
            f"of {timeout}, so the attempt counts as failed and its late result will be "
            f"discarded; make the step return in time (give what it waits on a timeout shorter "
            f"than the step's), or give the step a longer timeout"
        )


class StorageError(HephaestusError):
    """Base class of errors raised by a storage backend."""


class InstanceNotFound(StorageError, LookupError):
    """No instance is stored under that id (a malformed id also counts)."""

    def __init__(self, instance_id: object, detail: str = "") -> None:
        self.instance_id = instance_id
        suffix = f": {detail}" if detail else ""
        super().__init__(f"workflow instance {instance_id!s} not found{suffix}")


class InstanceDeletedError(InstanceNotFound):
    """A write found its instance gone: it was deleted (or pruned) after it was read.

    Only the first write of an instance inserts it; every later one updates the row it read,
    so a deleted instance stays deleted. The runner stops there: nothing after the write runs.
    """

    def __init__(self, instance_id: object, revision: int) -> None:
        self.revision = revision
        super().__init__(
            instance_id,
            f"it was deleted after revision {revision} was read, so this write was refused and "
            f"nothing more of it runs; start a new instance if the work is still wanted",
        )


class StaleInstanceError(StorageError):
    """``put`` was based on an older read than the stored instance.

    Another writer saved the instance after this copy was read; reload it with
    ``get()`` and apply the change again.
    """

    def __init__(self, instance_id: UUID, revision: int) -> None:
        self.instance_id = instance_id
        self.revision = revision
        super().__init__(
            f"workflow instance {instance_id} was changed by another writer since revision "
            f"{revision} was read; reload it with get() and apply the change again"
        )


class DuplicateInstanceError(StorageError):
    """An instance with this business key exists already in the workflow's ``key_scope``.

    ``existing_id`` is that instance's id: ``Workflow.start(..., key=...)`` returns it
    (idempotent start) unless the caller asked for this error.
    """

    def __init__(self, key: str, workflow: str, existing_id: UUID) -> None:
        self.key = key
        self.workflow = workflow
        self.existing_id = existing_id
        super().__init__(
            f"an instance of {workflow} with business key {key!r} exists already: "
            f"{existing_id}; use it (Workflow.get(key=...)), or start without if_exists='raise' "
            f"to get its id back"
        )


class SerializationError(StorageError, ValueError):
    """A value cannot be stored so that it comes back equal and of the same type.

    ``path`` names where it sits in the instance, e.g.
    ``context.initial.items[3].price``. Nothing was written.
    """

    def __init__(self, path: str, problem: str, *, instance_id: UUID | None = None) -> None:
        self.path = path
        self.problem = problem
        self.instance_id = instance_id
        where = f" of instance {instance_id}" if instance_id is not None else ""
        super().__init__(f"cannot store {path}{where}: {problem}")


class StateTooLargeError(SerializationError):
    """An instance's state is longer, as JSON, than ``HEPHAESTUS["MAX_STATE_BYTES"]`` allows.

    Raised before anything is written. When the state outgrows the bound through a step's
    result (each result small, together too many), the runners record it as that step's
    failure, under its retry policy, instead of leaving the step to be run again for ever.
    """


class CorruptInstanceError(StorageError):
    """A stored row cannot be turned back into an instance.

    Raised for that row only: other rows stay readable. ``path`` names the part
    of the stored state that is wrong.
    """

    def __init__(self, instance_id: object, path: str, problem: str) -> None:
        self.instance_id = instance_id
        self.path = path
        self.problem = problem
        super().__init__(f"stored workflow instance {instance_id} is corrupt at {path}: {problem}")


class InvalidQueryError(StorageError, ValueError):
    """A query filter has a value it cannot take (an unknown status, say)."""


class InvalidJobError(HephaestusError, ValueError):
    """A job handed to a worker does not describe a job of ours (a malformed payload).

    The job is dropped with this error logged: running it again would not help.
    """


class BackendNotConfigured(HephaestusError, LookupError):
    """No storage (or runner) is configured under the name asked for.

    Inside Django, add ``"hephaestus_django"`` to ``INSTALLED_APPS`` and check
    ``settings.HEPHAESTUS``; without Django, call
    ``hephaestus_django.runtime.configure(storages={"default": InMemoryStorage()})``.
    """


class DebounceError(HephaestusError, ValueError):
    """A debounced start cannot be made as asked: no business key to coalesce on, or a window
    or ``max_wait`` that is not a positive duration. The message names the workflow and what
    to do. Nothing was written."""


class ScheduleError(HephaestusError, ValueError):
    """A schedule cannot do what was asked: it is not configured, or a backfill's range is
    malformed or too long. The message names the schedule and what to do. Nothing started."""


class BulkOperationError(HephaestusError, ValueError):
    """A bulk operation cannot be made or run as asked: an unknown or unavailable operation,
    a missing option, an unknown bulk id, one run by another runner. The message says what to
    do; nothing was written."""
