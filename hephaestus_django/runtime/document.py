"""Instance <-> stored row: the columns and the JSON ``state`` document.

The ``state`` document holds everything but the columns::

    {"current_step", "context": {"initial", "steps"}, "step_configs",
     "active_steps", "waiting_steps", "completed_steps", "execution_history",
     "runtime_metadata", "error"}

plus, only when there is something to say, ``"attempts"`` (the failed attempts of steps
being retried), ``"cancellation"``, ``"compensation"`` and ``"upgrades"`` (the upgrades
to newer versions). A
waiting step's ``"attempt"`` and a history entry's ``"error"`` (a failed
attempt) are likewise written only when set, so documents written before
retries existed read as they always did.

The running marks of ``QueuedRunner``'s jobs (where and since when a step runs) are not in
the document but in a small column of their own (``running``, :func:`encoded_running`): a
job marks its step by writing that column alone, which no index covers, so PostgreSQL updates
the row in place. Rows written before the column existed kept their marks in the document's
``"running"``; they are read from there while the column is empty.

Classes are stored as dotted paths, sets as sorted lists, the engine's own
timestamps as ISO 8601 strings; values from users (context, configs,
metadata) go through :mod:`~hephaestus_django.runtime.codec`, so they come
back equal and of the same type or are refused before anything is written.

Reading is defensive: a row that does not decode raises
:class:`CorruptInstanceError` naming the instance and the path, and names are
resolved through the registries only.

Why one module of some 650 lines: writing and reading the document are two halves of one
format, kept side by side so that a field added to one is seen missing from the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any, NoReturn, TypeVar
from uuid import UUID

from hephaestus_django.core.engine import next_timer
from hephaestus_django.core.errors import CorruptInstanceError, UnknownWorkflowError
from hephaestus_django.core.graph import StepClass, WorkflowGraph
from hephaestus_django.core.instance import (
    Cancellation,
    Compensation,
    Context,
    Failure,
    HistoryEntry,
    Instance,
    Running,
    UpgradeRecord,
    Waiting,
    read_history_entry,
)
from hephaestus_django.core.keys import key_claim
from hephaestus_django.core.status import Status
from hephaestus_django.core.workflow import resolve_workflow
from hephaestus_django.runtime import codec

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("hephaestus_django.storage")

STATE_KEYS = (
    "current_step",
    "context",
    "step_configs",
    "active_steps",
    "waiting_steps",
    "completed_steps",
    "execution_history",
    "runtime_metadata",
    "error",
)

_STATE_KEY_SET = frozenset(STATE_KEYS)
_STATUSES = {status.value: status for status in Status}


@dataclass(slots=True)
class StoredRow:
    """An instance as a storage backend keeps it: columns plus the encoded state.

    Treat it as frozen: nothing changes a row once built (``dataclasses.replace`` makes the
    copies), except the in-memory storage's write completing the row its ``put`` has just
    built and shares with nothing. It is not declared frozen because every row read builds
    one, and a frozen dataclass's ``__init__``, setting each field through
    ``object.__setattr__``, takes 2.5 times as long (1.6 against 0.6 µs).
    """

    id: UUID
    workflow: str
    status: str
    workflow_version: int
    state: codec.JSON
    revision: int = 0
    inserted_at: datetime | None = None
    updated_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    due_at: datetime | None = None
    """The earliest timer of the waiting steps: what workers look for."""
    quarantine_reason: str | None = None
    """Why a worker could not decode the row it claimed; while set, no worker claims it again.
    Every write clears it."""
    business_key: str | None = None
    running: codec.JSON | None = None
    """The running marks (:func:`encoded_running`), None when no step has one."""
    key_claim: str | None = None
    """What makes the business key unique in its scope while the instance holds it
    (:func:`~hephaestus_django.core.keys.key_claim`); written, never read back."""
    upgraded_from: int | None = None
    """The version the instance's latest upgrade came from: a put changes the stored
    ``workflow_version`` only when it is the stored one (an upgrade of what is stored); any
    other put leaves the version as it was written first. Written, never read back."""
    plain: bool = False
    """``state`` was just parsed from text that :func:`codec.is_plain` (or ``is_plain_jsonb``)
    accepts, and is shared with nothing else: decoding it would copy it unchanged, so
    :func:`from_row` does not."""


def to_row(instance: Instance) -> StoredRow:
    """Encode an instance; ``SerializationError`` (naming the path) if it cannot be stored."""
    return StoredRow(
        id=instance.id,
        workflow=instance.workflow.path(),
        status=instance.status.value,
        workflow_version=instance.workflow_version,
        state=encoded_state(instance),
        running=encoded_running(instance),
        revision=instance.revision,
        lease_owner=instance.lease_owner,
        lease_expires_at=instance.lease_expires_at,
        due_at=due_time(instance),
        business_key=instance.business_key,
        key_claim=key_claim(instance),
        upgraded_from=instance.upgrades[-1].from_version if instance.upgrades else None,
    )


def due_time(instance: Instance) -> datetime | None:
    """When a worker must next look at the instance for a timer, if ever (not while it is
    paused: its timers wait for the unpause)."""
    if instance.status not in (Status.WAITING, Status.RUNNING):
        return None
    return next_timer(instance)


def encoded_state(instance: Instance) -> dict[str, Any]:
    """The ``state`` document, encoded; ``SerializationError`` naming the path if it cannot be.

    Only what comes from users goes through :func:`codec.encode`: contexts, configs, metadata,
    event names and the error. What the engine writes itself (step paths, ISO 8601 times,
    lists of steps) is JSON already, and walking it on every write would cost a third of the
    encoding. Each value is encoded at its depth in the document, so the nesting limit counts
    from the document's root, as reading the document back does.
    """
    return _StateWriter(instance).document()


def encoded_running(instance: Instance) -> dict[str, Any] | None:
    """The ``running`` column: each marked step's path -> where (``on``) and since when
    (``since``, ISO 8601); None while no step has a mark (most rows, most of the time)."""
    if not instance.running:
        return None
    return {
        step.path(): {"on": running.on, "since": running.since.isoformat()}
        for step, running in instance.running.items()
    }


class _StateWriter:
    """Builds the encoded state document of one instance."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        # In the document's order, so the first value refused is the first one written.
        self.encoded_initial = self.user(instance.context.initial, "context.initial", 2)
        self.steps = instance.context.steps
        self.encoded_steps = self.user(self.steps, "context.steps", 2)

    def user(self, value: object, path: str, depth: int) -> codec.JSON:
        if type(value) is dict and not value:  # often the metadata: nothing to check
            return value
        return codec.encode(value, path=path, instance_id=self.instance.id, depth=depth)

    def document(self) -> dict[str, Any]:
        document = self._document()
        if self.instance.attempts:  # only while steps are retried
            document["attempts"] = {
                step.path(): count for step, count in self.instance.attempts.items()
            }
        cancellation, compensation = self.instance.cancellation, self.instance.compensation
        if cancellation is not None:
            document["cancellation"] = {
                "at": cancellation.at.isoformat(),
                "reason": self.user(cancellation.reason, "cancellation.reason", 2),
                "steps": [step.path() for step in cancellation.steps],
                "compensate": cancellation.compensate,
            }
        if self.instance.upgrades:  # only once upgraded: other documents stay as they were
            document["upgrades"] = [
                {
                    "from": record.from_version,
                    "to": record.to_version,
                    "at": record.at.isoformat(),
                    "steps": dict(record.steps),
                }
                for record in self.instance.upgrades
            ]
        if compensation is not None:
            failure = compensation.failure
            document["compensation"] = {
                "ends": compensation.ends.value,
                "since": compensation.since.isoformat(),
                "pending": [step.path() for step in compensation.pending],
                "failure": None
                if failure is None
                else self.user(_failure_document(failure), "compensation.failure", 2),
            }
        return document

    def _document(self) -> dict[str, Any]:
        instance, user = self.instance, self.user
        error = instance.error
        return {
            "current_step": _path(instance.current_step),
            "context": {
                "initial": self.encoded_initial,
                "steps": self.encoded_steps,
            },
            "step_configs": {
                step.path(): user(config, codec.format_path("step_configs", step.path()), 2)
                for step, config in instance.step_configs.items()
            },
            "active_steps": _paths(instance.active_steps),
            "waiting_steps": {
                step.path(): self.waiting(step, waiting)
                for step, waiting in instance.waiting_steps.items()
            },
            "completed_steps": _paths(instance.completed_steps),
            "execution_history": list(map(self.entry, instance.execution_history, count())),
            "runtime_metadata": user(instance.runtime_metadata, "runtime_metadata", 1),
            "error": None if error is None else user(_failure_document(error), "error", 1),
        }

    def waiting(self, step: StepClass, waiting: Waiting) -> dict[str, Any]:
        """A waiting step's document. Only its ``timer_event`` can come from a step (``Async``):
        the rest is the engine's (ISO 8601 times, a count of attempts), and the step's path is a
        dotted Python name, so the document is not walked by :func:`codec.encode` as a whole
        (the walk cost as much as building it, on every write of a waiting instance)."""
        event: codec.JSON = waiting.timer_event
        if event is not None and (type(event) is not str or not event.isascii() or "\x00" in event):
            path = codec.format_path("waiting_steps", step.path()) + ".timer_event"
            event = self.user(event, path, 3)
        document = {
            "since": waiting.since.isoformat(),
            "resume_at": _iso(waiting.resume_at),
            "timer_event": event,
        }
        if waiting.attempt is not None:
            document["attempt"] = waiting.attempt
        return document

    def entry(self, entry: HistoryEntry, index: int) -> dict[str, Any]:
        event: codec.JSON = entry.event
        if type(event) is not str or not event.isascii() or "\x00" in event:
            event = self.user(event, f"execution_history[{index}].event", 3)
        metadata = entry.metadata_updates
        document: dict[str, Any] = {
            "step": entry.step.path(),
            "event": event,
            "timestamp": entry.timestamp.isoformat(),
            "context_updates": self.updates(entry, index),
            "metadata_updates": None
            if metadata is None
            else self.user(metadata, f"execution_history[{index}].metadata_updates", 3),
            "next_steps": [step.path() for step in entry.next_steps],
        }
        if entry.error is not None:  # a failed attempt that was retried
            document["error"] = self.user(
                _failure_document(entry.error), f"execution_history[{index}].error", 3
            )
        if entry.compensating:
            document["compensating"] = True
        return document

    def updates(self, entry: HistoryEntry, index: int) -> codec.JSON:
        """An entry's result; the one in ``context.steps`` when it is that very object.

        The engine puts the same result object in both places, and ``context.steps`` was
        encoded a moment ago at the same depth: that object is not walked a second time.
        """
        updates = entry.context_updates
        if updates is None:
            return None
        steps, key = self.steps, entry.step.step_key
        if type(steps) is dict and steps.get(key) is updates and codec.TYPE_KEY not in steps:
            return self.encoded_steps[key]  # type: ignore[index,call-overload]
        return self.user(updates, f"execution_history[{index}].context_updates", 3)


def decode_rows(rows: Iterable[R], read: Callable[[R], StoredRow]) -> list[Instance]:
    """Decode rows for a query result, leaving out (and logging) any that cannot be decoded.

    ``read`` turns each row as the backend holds it into a :class:`StoredRow`; it runs inside
    the same guard as :func:`from_row`, so a row whose text cannot even be parsed is left out
    like any other corrupt row. One corrupt row, or one whose workflow is no longer defined,
    must not hide the others; ``get`` on its id raises the error instead.
    """
    instances = []
    for row in rows:
        try:
            instances.append(from_row(read(row)))
        except (CorruptInstanceError, UnknownWorkflowError) as error:
            logger.error(
                "left workflow instance %s out of query results: %s", error.instance_id, error
            )
    return instances


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A claimed row that could not be decoded: it is set aside until it is written again."""

    id: UUID
    revision: int
    """The revision the claim gave it: a row written since is not quarantined."""
    reason: str


def decode_claimed(
    rows: Iterable[R], read: Callable[[R], StoredRow], identify: Callable[[R], tuple[UUID, int]]
) -> tuple[list[Instance], list[Quarantined]]:
    """Decode the rows a worker claimed; the ones that cannot be decoded are to be quarantined.

    Like :func:`decode_rows`, but a row left out is logged as quarantined, and returned with
    ``identify``'s id and revision of it so the backend can mark it: a corrupt row is then
    claimed once and logged once, instead of at every lease period forever.
    """
    instances: list[Instance] = []
    quarantined: list[Quarantined] = []
    for row in rows:
        try:
            instances.append(from_row(read(row)))
        except (CorruptInstanceError, UnknownWorkflowError) as error:
            instance_id, revision = identify(row)
            reason = f"{type(error).__name__}: {error}"
            quarantined.append(Quarantined(instance_id, revision, reason))
            logger.error(
                "quarantined workflow instance %s: %s; no worker claims it again until it is "
                "written (fix what the error names, or delete the instance)",
                instance_id,
                error,
            )
    return instances, quarantined


def from_row(row: StoredRow) -> Instance:
    """Decode a stored row; ``CorruptInstanceError`` / ``UnknownWorkflowError`` for a bad one."""
    workflow = resolve_workflow(row.workflow, row.workflow_version, instance_id=row.id)
    reader = _Reader(row.id, workflow.graph)
    decoded = row.state if row.plain else codec.decode(row.state, instance_id=row.id)
    state = reader.mapping(decoded, "state")
    if not state.keys() >= _STATE_KEY_SET:
        missing = [key for key in STATE_KEYS if key not in state]
        reader.corrupt("state", f"missing keys {', '.join(missing)}")
    context = reader.mapping(state["context"], "context")
    for key in ("initial", "steps"):
        if key not in context:
            reader.corrupt("context", f"missing key {key!r}")
    status = _STATUSES.get(row.status)
    if status is None:
        known = ", ".join(_STATUSES)
        reader.corrupt("status", f"unknown status {row.status!r} (the statuses are {known})")
    instance = Instance(
        id=row.id,
        workflow=workflow,
        workflow_version=row.workflow_version,
        status=status,
        current_step=reader.optional(state["current_step"], "current_step", reader.step),
        context=Context(
            initial=reader.mapping(context["initial"], "context.initial"),
            steps=reader.mapping(context["steps"], "context.steps"),
        ),
        step_configs={
            reader.step(name, f"step_configs[{name!r}]"): reader.mapping(
                config, f"step_configs[{name!r}]"
            )
            for name, config in reader.mapping(state["step_configs"], "step_configs").items()
        },
        active_steps=reader.step_set(state["active_steps"], "active_steps"),
        waiting_steps={
            reader.step(name, f"waiting_steps[{name!r}]"): reader.waiting(
                value, f"waiting_steps[{name!r}]"
            )
            for name, value in reader.mapping(state["waiting_steps"], "waiting_steps").items()
        },
        completed_steps=reader.step_set(state["completed_steps"], "completed_steps"),
        execution_history=reader.history(state["execution_history"]),
        runtime_metadata=reader.mapping(state["runtime_metadata"], "runtime_metadata"),
        error=reader.optional(state["error"], "error", reader.failure),
        revision=row.revision,
        inserted_at=row.inserted_at,
        updated_at=row.updated_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        # Rows written before the column kept the marks in the document.
        running=reader.running(row.running if row.running is not None else state.get("running")),
        attempts=reader.attempts(state.get("attempts")),
        business_key=row.business_key,
        cancellation=reader.optional(
            state.get("cancellation"), "cancellation", reader.cancellation
        ),
        compensation=reader.optional(
            state.get("compensation"), "compensation", reader.compensation
        ),
        upgrades=reader.upgrades(state.get("upgrades")),
    )
    disagreement = status_disagreement(instance)
    if disagreement is not None:
        reader.corrupt("status", disagreement)
    return instance


def status_disagreement(instance: Instance) -> str | None:
    """Why the ``status`` column does not fit the state, if it does not.

    The engine derives the status from the state (an error: failed; a step to run: running;
    steps waiting only: waiting; none active: completed), so a row where they disagree was
    written by something else; reading it silently would let a worker or the admin act on
    the wrong one. Pending and cancelled instances keep no rule beyond having no error.
    """
    status, error = instance.status, instance.error
    if status is Status.FAILED:
        return None if error is not None else "it is 'failed' but the state records no error"
    if error is not None:
        return f"it is {status.value!r} but the state records the error of a failed instance"
    waiting = instance.waiting_steps
    runnable = [step for step in instance.active_steps if step not in waiting]
    if status is Status.RUNNING and not runnable:
        return "it is 'running' but the state has no step to run"
    if status is Status.WAITING and (runnable or not waiting):
        found = f"steps to run ({_names(instance.active_steps)})" if runnable else "no waiting step"
        return f"it is 'waiting' but the state has {found}"
    if status is Status.COMPLETED and (instance.active_steps or waiting):
        return f"it is 'completed' but the state has active steps ({_names(instance.active_steps)})"
    return None


def _names(steps: frozenset[StepClass]) -> str:
    """The steps' names for a message, sorted: built only for a message (every row read asks
    :func:`status_disagreement`, almost always for nothing)."""
    return ", ".join(sorted(step.__qualname__ for step in steps))


def _failure_document(error: Failure) -> dict[str, Any]:
    return {
        "step": error.step.path(),
        "type": error.error_type,
        "message": error.message,
        "at": error.at.isoformat(),
        **({} if error.traceback is None else {"traceback": error.traceback}),
    }


def _path(step: StepClass | None) -> str | None:
    return None if step is None else step.path()


def _paths(steps: frozenset[StepClass]) -> list[str]:
    return sorted(step.path() for step in steps)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class _Reader:
    """Typed reads from a decoded state document, each failing with its path."""

    def __init__(self, instance_id: UUID, graph: WorkflowGraph) -> None:
        self.instance_id = instance_id
        self.graph = graph

    def corrupt(self, path: str, problem: str) -> NoReturn:
        raise CorruptInstanceError(self.instance_id, path, problem)

    def mapping(self, value: object, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.corrupt(path, f"expected an object, found {type(value).__name__}")
        return value

    def list(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list):
            self.corrupt(path, f"expected a list, found {type(value).__name__}")
        return value

    def string(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            self.corrupt(path, f"expected a string, found {type(value).__name__}")
        return value

    def optional(self, value: object, path: str, read: Callable[[Any, str], T]) -> T | None:
        return None if value is None else read(value, path)

    def datetime(self, value: object, path: str) -> datetime:
        text = self.string(value, path)
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            self.corrupt(path, f"{text!r} is not an ISO 8601 datetime")

    def step(self, value: object, path: str) -> StepClass:
        name = self.string(value, path)
        step = self.graph.by_path.get(name)
        if step is None:
            self.corrupt(
                path,
                f"step {name!r} is not part of workflow {self.graph.workflow} as defined now "
                f"(was the step renamed or removed after this instance was stored?)",
            )
        return step

    def step_set(self, value: object, path: str) -> frozenset[StepClass]:
        names = self.list(value, path)
        try:  # the common case, without a path string per name
            return frozenset(self.graph.by_path[name] for name in names)
        except (KeyError, TypeError):
            pass
        return frozenset(self.step(name, f"{path}[{index}]") for index, name in enumerate(names))

    def waiting(self, value: object, path: str) -> Waiting:
        fields = self.mapping(value, path)
        return Waiting(
            since=self.datetime(fields.get("since"), f"{path}.since"),
            resume_at=self.optional(fields.get("resume_at"), f"{path}.resume_at", self.datetime),
            timer_event=self.optional(
                fields.get("timer_event"), f"{path}.timer_event", self.string
            ),
            attempt=self.optional(fields.get("attempt"), f"{path}.attempt", self.count),
        )

    def count(self, value: object, path: str) -> int:
        if type(value) is not int or value < 1:
            self.corrupt(path, f"expected a positive integer, found {value!r}")
        return value

    def attempts(self, value: object) -> dict[StepClass, int]:
        if value is None:
            return {}
        return {
            self.step(name, f"attempts[{name!r}]"): self.count(count, f"attempts[{name!r}]")
            for name, count in self.mapping(value, "attempts").items()
        }

    def running(self, value: object) -> dict[StepClass, Running]:
        if value is None:
            return {}
        running = {}
        for name, fields in self.mapping(value, "running").items():
            path = f"running[{name!r}]"
            found = self.mapping(fields, path)
            running[self.step(name, path)] = Running(
                on=self.string(found.get("on"), f"{path}.on"),
                since=self.datetime(found.get("since"), f"{path}.since"),
            )
        return running

    def history(self, value: object) -> tuple[HistoryEntry, ...]:
        entries = self.list(value, "execution_history")
        read = []
        for index, entry in enumerate(entries):
            # The path is only spelled out for an entry that is not well-formed.
            found = self._plain_entry(entry) if type(entry) is dict else None
            if found is None:
                path = f"execution_history[{index}]"
                found = self._checked_entry(self.mapping(entry, path), path)
            read.append(found)
        return tuple(read)

    def _plain_entry(self, fields: dict[str, Any]) -> HistoryEntry | None:
        """A well-formed entry read without building a path per field; None for any doubt."""
        by_path = self.graph.by_path
        name, event, stamp = fields.get("step"), fields.get("event"), fields.get("timestamp")
        metadata, names = fields.get("metadata_updates"), fields.get("next_steps", [])
        step = by_path.get(name) if type(name) is str else None
        if step is None or type(event) is not str or type(stamp) is not str:
            return None
        if fields.get("error") is not None or "compensating" in fields:  # rare: read checked
            return None
        if not (metadata is None or type(metadata) is dict) or type(names) is not list:
            return None
        try:
            timestamp = datetime.fromisoformat(stamp)
            next_steps = tuple(map(by_path.__getitem__, names))
        except (ValueError, KeyError, TypeError):
            return None
        return read_history_entry(
            step, event, timestamp, fields.get("context_updates"), metadata, next_steps
        )

    def _checked_entry(self, fields: dict[str, Any], path: str) -> HistoryEntry:
        metadata = fields.get("metadata_updates")
        return HistoryEntry(
            step=self.step(fields.get("step"), f"{path}.step"),
            event=self.string(fields.get("event"), f"{path}.event"),
            timestamp=self.datetime(fields.get("timestamp"), f"{path}.timestamp"),
            context_updates=fields.get("context_updates"),
            metadata_updates=None
            if metadata is None
            else self.mapping(metadata, f"{path}.metadata_updates"),
            next_steps=tuple(
                self.step(name, f"{path}.next_steps[{index}]")
                for index, name in enumerate(
                    self.list(fields.get("next_steps", []), f"{path}.next_steps")
                )
            ),
            error=self.optional(fields.get("error"), f"{path}.error", self.failure),
            compensating=self.flag(fields.get("compensating", False), f"{path}.compensating"),
        )

    def flag(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            self.corrupt(path, f"expected true or false, found {value!r}")
        return value

    def steps(self, value: object, path: str) -> tuple[StepClass, ...]:
        return tuple(
            self.step(name, f"{path}[{index}]") for index, name in enumerate(self.list(value, path))
        )

    def cancellation(self, value: object, path: str) -> Cancellation:
        fields = self.mapping(value, path)
        return Cancellation(
            at=self.datetime(fields.get("at"), f"{path}.at"),
            reason=self.optional(fields.get("reason"), f"{path}.reason", self.string),
            steps=self.steps(fields.get("steps", []), f"{path}.steps"),
            compensate=self.flag(fields.get("compensate", False), f"{path}.compensate"),
        )

    def compensation(self, value: object, path: str) -> Compensation:
        fields = self.mapping(value, path)
        found = fields.get("ends")
        ends = _STATUSES.get(found) if isinstance(found, str) else None
        if ends is None or ends not in (Status.CANCELLED, Status.FAILED, Status.RUNNING):
            self.corrupt(
                f"{path}.ends", f"expected 'cancelled', 'failed' or 'running', found {found!r}"
            )
        failure = self.optional(fields.get("failure"), f"{path}.failure", self.failure)
        if ends is Status.FAILED and failure is None:
            self.corrupt(f"{path}.failure", "a compensation that ends failed keeps its failure")
        return Compensation(
            ends=ends,
            since=self.datetime(fields.get("since"), f"{path}.since"),
            pending=self.steps(fields.get("pending", []), f"{path}.pending"),
            failure=failure,
        )

    def upgrades(self, value: object) -> tuple[UpgradeRecord, ...]:
        if value is None:
            return ()
        records = []
        for index, fields in enumerate(self.list(value, "upgrades")):
            path = f"upgrades[{index}]"
            found = self.mapping(fields, path)
            steps = self.mapping(found.get("steps", {}), f"{path}.steps")
            for old, new in steps.items():
                if new is not None:
                    self.string(new, f"{path}.steps[{old!r}]")
            records.append(
                UpgradeRecord(
                    from_version=self.count(found.get("from"), f"{path}.from"),
                    to_version=self.count(found.get("to"), f"{path}.to"),
                    at=self.datetime(found.get("at"), f"{path}.at"),
                    steps=steps,
                )
            )
        return tuple(records)

    def failure(self, value: object, path: str) -> Failure:
        fields = self.mapping(value, path)
        return Failure(
            step=self.step(fields.get("step"), f"{path}.step"),
            error_type=self.string(fields.get("type"), f"{path}.type"),
            message=self.string(fields.get("message"), f"{path}.message"),
            at=self.datetime(fields.get("at"), f"{path}.at"),
            # Absent from rows written before tracebacks were kept.
            traceback=self.optional(fields.get("traceback"), f"{path}.traceback", self.string),
        )
