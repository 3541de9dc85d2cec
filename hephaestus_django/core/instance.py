"""One execution of a workflow, and the records it keeps.

Values here are plain data: the engine builds new ones instead of changing
them, so an instance you hold is never changed behind your back. The only
exception is the storage bookkeeping (``revision``, ``inserted_at``,
``updated_at``), which ``storage.put`` records on the object it was given so
the same object can be put again, like ``Model.save()`` does. The lease fields
say which runner is executing the instance's steps (see the runner).

``Instance(...)`` validates what it is given; the engine and the runner copy
an instance with :func:`evolve`, which does not validate again.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid4

from hephaestus_django.core.errors import InvalidInstanceError
from hephaestus_django.core.status import Status

if TYPE_CHECKING:
    from hephaestus_django.core.steps import Step
    from hephaestus_django.core.workflow import WorkflowDefinition

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_REPR_STEPS = 3
"""How many steps an instance's repr names before "and N more"."""
_REPR_MESSAGE = 40
"""How much of a failed instance's error message its repr shows."""


@dataclass(frozen=True, slots=True)
class Context:
    """The data an instance works on.

    ``initial`` is what the instance was started with and never changes;
    ``steps`` holds each completed step's result under its ``step_key``.
    """

    initial: Mapping[str, Any] = field(default_factory=dict)
    steps: Mapping[str, Any] = field(default_factory=dict)

    def result(self, step: type[Step] | str, default: Any = None) -> Any:
        """The result a step stored, by class or by ``step_key``."""
        key = step if isinstance(step, str) else step.step_key
        return self.steps.get(key, default)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One completed step: which, with what event, when, and what it changed.

    ``next_steps`` are the steps the transition chose; the engine derives
    which joins have been reached from them.

    A failed attempt that its retry policy tries again is an entry too: its ``error`` is the
    attempt's failure, its ``event`` is empty and it chose no ``next_steps``.

    An entry with ``compensating`` set records the step's compensation (its ``compensate``
    ran, event ``"compensated"``) or, with an ``error``, a failed attempt at it; so does the
    failure that started the compensations of a ``compensate_on_failure`` workflow.
    """

    step: type[Step]
    event: str
    timestamp: datetime
    context_updates: Any = None
    metadata_updates: Mapping[str, Any] | None = None
    next_steps: tuple[type[Step], ...] = ()
    error: Failure | None = None
    """The failure of an attempt that was retried; None for a completed step."""
    compensating: bool = False
    """True when the entry belongs to the instance's compensations, not to its steps' work."""

    @property
    def failed(self) -> bool:
        """True for a failed attempt (retried), False for a completion."""
        return self.error is not None


# The slots' own descriptors, in field order: see read_history_entry.
_HISTORY_ENTRY_SLOTS = tuple(getattr(HistoryEntry, f.name).__set__ for f in fields(HistoryEntry))


def read_history_entry(
    step: type[Step],
    event: str,
    timestamp: datetime,
    context_updates: Any,
    metadata_updates: Mapping[str, Any] | None,
    next_steps: tuple[type[Step], ...],
    error: Failure | None = None,
    compensating: bool = False,
) -> HistoryEntry:
    """``HistoryEntry(...)`` for a storage decoding a row, whose values it has just checked.

    The same entry, built in 0.37 µs instead of 0.93: a frozen dataclass's ``__init__`` sets
    each field through ``object.__setattr__``, and a read builds one entry per step of every
    instance's history (four per instance of a 3-step workflow, a hundred times that per
    query). The slots are set through their descriptors instead, which is what
    ``object.__setattr__`` ends up calling; the entry stays frozen.
    """
    entry = object.__new__(HistoryEntry)
    (
        set_step,
        set_event,
        set_timestamp,
        set_context,
        set_metadata,
        set_next,
        set_error,
        set_compensating,
    ) = _HISTORY_ENTRY_SLOTS
    set_step(entry, step)
    set_event(entry, event)
    set_timestamp(entry, timestamp)
    set_context(entry, context_updates)
    set_metadata(entry, metadata_updates)
    set_next(entry, next_steps)
    set_error(entry, error)
    set_compensating(entry, compensating)
    return entry


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a step is waiting: since when, and the timer that ends it, if any.

    With ``attempt`` set, the step failed and waits to be attempted again (its retry policy's
    backoff): at ``resume_at`` it runs again, as attempt number ``attempt``; ``resume()``
    cannot end such a wait.
    """

    since: datetime
    resume_at: datetime | None = None
    timer_event: str | None = None
    attempt: int | None = None

    @property
    def retrying(self) -> bool:
        """True when the step waits for its next attempt, not for an event."""
        return self.attempt is not None


@dataclass(frozen=True, slots=True)
class Running:
    """Where and since when a step runs as a job (``QueuedRunner``): a worker's host and pid."""

    on: str
    since: datetime


@dataclass(frozen=True, slots=True)
class Failure:
    """The error that failed an instance: the step, the exception's type and message.

    ``traceback`` is where it was raised, as Python prints it, so an operator can find the
    line without reproducing the failure; it is bounded in size (see
    :func:`format_traceback`), and None for failures recorded
    before it was kept or raised without one.
    """

    step: type[Step]
    error_type: str
    message: str
    at: datetime
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class Cancellation:
    """Why and when ``Workflow.cancel`` stopped an instance, and where it stood then.

    ``steps`` are the steps that were active or waiting at that moment (they never ran to
    an end); ``compensate`` says whether the caller asked for the completed steps to be
    compensated.
    """

    at: datetime
    reason: str | None = None
    steps: tuple[type[Step], ...] = ()
    compensate: bool = False


@dataclass(frozen=True, slots=True)
class Compensation:
    """An instance undoing its completed steps, the last completed first.

    ``pending`` are the steps whose ``compensate`` has not run to an end yet, in the order
    they run (the first one is the instance's active step); the instance ends ``ends``
    (cancelled, or failed with ``failure``, the error that started the compensations) once
    it is empty. The record stays on the ended instance, with ``pending`` empty. ``ends``
    ``running`` is a rewind's (``rewind(..., compensate=True)``): once the compensations ran,
    the rewind applies, and the record goes (:mod:`~hephaestus_django.core.rewind`).
    """

    ends: Status
    since: datetime
    pending: tuple[type[Step], ...] = ()
    failure: Failure | None = None

    @property
    def done(self) -> bool:
        """True once every step has been compensated."""
        return not self.pending


@dataclass(frozen=True, slots=True)
class UpgradeRecord:
    """An upgrade of the instance to a newer version of its workflow (``Workflow.upgrade``):
    from which version to which, when, and the steps that changed: each old step's dotted path
    with its new step's, or None for a step the new version dropped (with its history entries
    and result). Paths, not classes: the old version's steps need not be registered any more.
    """

    from_version: int
    to_version: int
    at: datetime
    steps: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(kw_only=True, repr=False)
class Instance:
    """One execution of a workflow.

    Build new instances with ``engine.new_instance`` (or ``Workflow.start``);
    the engine returns a new ``Instance`` for every transition.

    ``repr()`` is one short line (id, workflow, version, status, the steps it
    is at, revision), so a list of instances stays readable in a shell or a
    log; the full data is in the fields (``instance.context``,
    ``instance.execution_history``, ...; ``vars(instance)`` has them all).
    """

    workflow: type[WorkflowDefinition]
    id: UUID = field(default_factory=uuid4)
    workflow_version: int = 1
    status: Status = Status.PENDING
    current_step: type[Step] | None = None
    context: Context = field(default_factory=Context)
    step_configs: Mapping[type[Step], Mapping[str, Any]] = field(default_factory=dict)
    active_steps: frozenset[type[Step]] = frozenset()
    waiting_steps: Mapping[type[Step], Waiting] = field(default_factory=dict)
    completed_steps: frozenset[type[Step]] = frozenset()
    execution_history: tuple[HistoryEntry, ...] = ()
    runtime_metadata: Mapping[str, Any] = field(default_factory=dict)
    error: Failure | None = None
    attempts: Mapping[type[Step], int] = field(default_factory=dict)
    """How many times each active step has failed and been retried (its retry policy's
    count); a step is absent until its first failed attempt, and dropped when it completes."""
    revision: int = 0
    """How many times storage has written this instance; 0 before the first put."""
    inserted_at: datetime | None = None
    updated_at: datetime | None = None
    lease_owner: str | None = None
    """The runner executing this instance's steps right now, if any."""
    lease_expires_at: datetime | None = None
    """When that runner's claim lapses unless renewed; after it, a worker may take over."""
    running: Mapping[type[Step], Running] = field(default_factory=dict)
    """The active steps a job engine's worker is executing right now (``QueuedRunner``): the
    others are queued. Empty for ``LocalRunner``, which runs its steps within its own lease."""
    cancellation: Cancellation | None = None
    """Set by ``Workflow.cancel``: when, why, and where the instance stood."""
    compensation: Compensation | None = None
    """Set while (and after) the instance undoes its completed steps: see :class:`Compensation`."""
    business_key: str | None = None
    """The caller's own name for the instance (``start(..., key=...)``), unique in the
    workflow's ``key_scope``; it never changes."""
    upgrades: tuple[UpgradeRecord, ...] = ()
    """The upgrades that moved the instance to a newer version of its workflow, oldest first."""

    @property
    def compensating(self) -> bool:
        """True while compensations remain to run: the active step runs its ``compensate``."""
        compensation = self.compensation
        return compensation is not None and bool(compensation.pending)

    @property
    def parent(self) -> UUID | None:
        """The id of the instance whose ``Child`` step started this one, or None."""
        from hephaestus_django.core.children import parent_of

        link = parent_of(self)
        return None if link is None else link.id

    @property
    def children(self) -> Mapping[str, UUID]:
        """The ids of the child instances this one started, by their ``Child`` step's key."""
        from hephaestus_django.core.children import children_of

        return children_of(self)

    def leased_to_other(self, owner: str, now: datetime) -> bool:
        """True when a runner other than ``owner`` holds a live lease."""
        return (
            self.lease_owner is not None
            and self.lease_owner != owner
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def __repr__(self) -> str:
        """One line, e.g. ``<Instance 0b9f6c1e-… OrderWorkflow v1 waiting at AwaitPayment,
        revision 2>`` (with the whole id)."""
        return (
            f"<{type(self).__qualname__} {self.id} {self.workflow.__qualname__} "
            f"v{self.workflow_version} {self.status.value}{self._whereabouts()}, "
            f"revision {self.revision}>"
        )

    def _whereabouts(self) -> str:
        """`` at <steps>`` for the repr: the failed, waiting, active or current step(s)."""
        if self.compensating and self.compensation is not None and self.error is None:
            return f" compensating {self.compensation.pending[0].__qualname__}"
        if self.error is not None:
            message = self.error.message
            if len(message) > _REPR_MESSAGE:
                message = message[: _REPR_MESSAGE - 1] + "…"
            return f" at {self.error.step.__qualname__} ({self.error.error_type}: {message})"
        steps = self.waiting_steps or self.active_steps
        if steps:
            names = sorted(step.__qualname__ for step in steps)
            shown = ", ".join(names[:_REPR_STEPS])
            more = len(names) - _REPR_STEPS
            return f" at {shown}" + (f" and {more} more" if more > 0 else "")
        if self.current_step is not None:
            return f" at {self.current_step.__qualname__}"
        return ""

    def __post_init__(self) -> None:
        self.id = coerce_instance_id(self.id)
        version = self.workflow_version
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInstanceError(
                f"workflow_version of instance {self.id} must be a positive int, not {version!r}"
            )
        try:
            if type(self.status) is not Status:
                self.status = Status(self.status)
        except ValueError:
            statuses = ", ".join(status.value for status in Status)
            raise InvalidInstanceError(
                f"status of instance {self.id} must be one of {statuses}, not {self.status!r}"
            ) from None


_FIELD_NAMES = frozenset(f.name for f in fields(Instance))
_I = TypeVar("_I", bound=Instance)


def evolve(instance: _I, **changes: Any) -> _I:
    """A copy of ``instance`` with ``changes``, for the engine's and the runner's transitions.

    Like ``dataclasses.replace``, but without calling ``__init__``: ``replace``
    runs ``__post_init__`` again on every copy, and a transition copies an
    instance several times. The values here need no second check: the rest
    come from ``instance``, which was validated when it was built, and the
    changes come from the engine itself. So callers must pass only values of
    the right types (a ``Status``, not a string); this is for transitions, not
    for user input, which still goes through ``Instance(...)``.

    The copy is shallow, as with ``replace``: fields not changed refer to the
    same objects as in ``instance``. The class of ``instance`` is kept, and a
    name that is not a field is refused with ``TypeError``.
    """
    cls = type(instance)
    if not changes.keys() <= _FIELD_NAMES:
        # a subclass may add fields of its own
        unknown = changes.keys() - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(
                f"{cls.__qualname__} has no field {', '.join(sorted(unknown))}; "
                f"evolve() can only change fields"
            )
    new = object.__new__(cls)
    new.__dict__.update(instance.__dict__)
    new.__dict__.update(changes)
    return new


def coerce_instance_id(value: object) -> UUID:
    """A UUID, or the canonical text of one; anything else is refused."""
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidInstanceError(f"an instance id must be a UUID, not {value!r}")


def instance_key(value: object) -> UUID | None:
    """The UUID ``value`` denotes, or None when it cannot be an instance id.

    Storages look ids up with it: a malformed id simply matches nothing.
    """
    try:
        return coerce_instance_id(value)
    except InvalidInstanceError:
        return None


TRACEBACK_FRAMES = 40
"""How many of the innermost frames of each exception (and of each cause) a failure keeps."""
TRACEBACK_CHARS = 8192
"""The most characters of a failure's traceback kept; the end, where it was raised, stays."""

_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def format_traceback(error: BaseException) -> str | None:
    """``error``'s traceback as Python prints it (with its causes), bounded for storage.

    The state is rewritten on every transition of the instance, so a recursion error's
    thousand frames or a huge value in a source line must not weigh on every later write: the
    innermost :data:`TRACEBACK_FRAMES` frames of each exception are kept, and at most
    :data:`TRACEBACK_CHARS` characters, the end of the text (where it was raised) from a line
    start. NUL and lone surrogates, which PostgreSQL's jsonb cannot hold, are written as
    escapes. None when the error was never raised (it has no traceback) or cannot be formatted.
    """
    if error.__traceback__ is None:
        return None
    try:
        text = "".join(traceback.format_exception(error, limit=-TRACEBACK_FRAMES)).rstrip()
    except Exception:  # a hostile __str__ or __repr__ must not lose the failure itself
        return None
    text = _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    if len(text) <= TRACEBACK_CHARS:
        return text
    tail = text[-(TRACEBACK_CHARS - 60) :]
    line_start = tail.find("\n") + 1
    if 0 < line_start < len(tail):
        tail = tail[line_start:]
    return f"[{len(text) - len(tail)} characters of the traceback left out]\n{tail}"
