"""``Workflow``: define a workflow, then start, resume, fetch and list its instances.

::

    class Onboarding(Workflow):
        start_step = SendWelcome
        transitions = {SendWelcome: {"sent": Done}}

    instance_id = Onboarding.start({"user_id": 7})
    Onboarding.get(instance_id).status        # Status.COMPLETED

``storage=`` names a configured storage alias (``"default"`` unless told) or
is a storage object. Called on a concrete workflow class, ``get``, ``resume``
and ``list`` only see that workflow's instances; on ``Workflow`` itself, all.

An instance started with a business ``key`` (``start(context, key="order-A-1001")``)
is found by it too: ``get``, ``resume``, ``retry`` and ``cancel`` take ``key=``
instead of an id, and ``list(key=...)`` filters on it.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Literal
from uuid import UUID

from hephaestus_django.core.debounce import Debounce
from hephaestus_django.core.errors import (
    DebounceError,
    DuplicateInstanceError,
    InstanceNotFound,
    InvalidInstanceError,
)
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.keys import FINISHED
from hephaestus_django.core.rewind import RewindPlan
from hephaestus_django.core.rewind import plan as rewind_plan
from hephaestus_django.core.upgrades import upgrade as upgrade_instance
from hephaestus_django.core.versions import VersionedDefinition
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime.asynchronous import async_twin
from hephaestus_django.runtime.config import DEFAULT_ALIAS, backends
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.execution import dry_run_plan, expect


class Workflow(WorkflowDefinition):
    """Base class of runnable workflows (see :class:`WorkflowDefinition` for the body)."""

    abstract = True

    @classmethod
    def start(
        cls,
        context: Mapping[str, Any] | None = None,
        *,
        id: UUID | str | None = None,
        key: str | None = None,
        if_exists: Literal["return", "raise"] = "return",
        storage: str | Storage = DEFAULT_ALIAS,
        metadata: Mapping[str, Any] | None = None,
        version: int | None = None,
        priority: int = 0,
        debounce: Debounce | timedelta | float | None = None,
    ) -> UUID:
        """Start an instance with ``context`` as its initial data; return its id.

        The instance is persisted before its first step runs, then runs until
        it waits, completes or fails. ``id`` lets the caller choose the id (a
        UUID); a value that cannot be stored raises ``SerializationError``
        and nothing is written.

        ``key`` is the caller's own name for the instance ("order-A-1001"), unique in the
        workflow's ``key_scope``: when an instance holds it already, nothing is started and
        that instance's id is returned (a retried webhook starts one fulfilment, not two), or,
        with ``if_exists="raise"``, ``DuplicateInstanceError`` names it. Atomic under
        concurrency: of several processes starting one key at once, one starts it and the
        others get its id.

        On a :class:`VersionedWorkflow`, the instance starts on ``version``, else on the one
        its ``version_for(context, key=..., metadata=..., id=...)`` chooses, else on the
        ``current`` one; it runs on that version's definition until it ends (or is upgraded).

        ``priority`` orders the instance's steps in the lines of concurrency limits
        (:class:`~hephaestus_django.Concurrency`): higher first, equal ones first come, first
        served. It is kept in the runtime metadata, as ``hephaestus_priority``.

        With ``debounce`` (a :class:`~hephaestus_django.Debounce`, or its window as a timedelta
        or seconds), nothing starts now: the starts with this ``key`` coalesce into one
        instance that a worker starts once no start came for the window (bounded by the
        Debounce's ``max_wait``), with the last start's context and metadata; every caller
        gets the id it will have. ``key`` is required; ``id`` cannot be chosen.
        """
        if if_exists not in ("return", "raise"):
            raise ValueError(f"if_exists must be 'return' or 'raise', not {if_exists!r}")
        if debounce is not None and id is not None:
            raise DebounceError(
                f"a debounced start of {cls.__qualname__} cannot choose its id: the first start "
                "of the window does; leave id out"
            )
        if version is None:
            version = chosen_version(cls, context, key=key, metadata=metadata, id=id)
        definition = cls.starting(version)
        runner = backends.runner()
        if debounce is not None:
            return runner.start_debounced(
                definition,
                context,
                storage=backends.storage(storage),
                key=key,  # type: ignore[arg-type]  # None is refused, naming the workflow
                debounce=debounce,
                metadata=metadata,
                priority=priority,
            ).id
        try:
            return runner.start(
                definition,
                context,
                storage=backends.storage(storage),
                id=id,
                metadata=metadata,
                key=key,
                priority=priority,
            ).id
        except DuplicateInstanceError as error:
            if if_exists == "raise":
                raise
            return error.existing_id

    @classmethod
    def resume(
        cls,
        id: UUID | str | None = None,
        event: str | None = None,
        data: Any = None,
        *,
        key: str | None = None,
        step: StepClass | str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Deliver ``event`` to a waiting step (``data`` becomes its result) and run on.

        Works from any process. ``step`` picks the step when several waiting
        steps declare the same event. Name the instance by ``id`` or by its business ``key``.
        """
        if event is None:
            raise TypeError(
                "resume() needs the event to deliver: resume(id, event) or "
                "resume(key=..., event=...)"
            )
        chosen = backends.storage(storage)
        return backends.runner().resume(
            cls._identify(id, key, chosen),
            event,
            data,
            storage=chosen,
            step=step,
            workflow=cls._scope(),
        )

    @classmethod
    def retry(
        cls,
        id: UUID | str | None = None,
        *,
        key: str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Run a failed instance's failed step again, and what follows."""
        chosen = backends.storage(storage)
        return backends.runner().retry(
            cls._identify(id, key, chosen),
            storage=chosen,
            workflow=cls._scope(),
        )

    @classmethod
    def cancel(
        cls,
        id: UUID | str | None = None,
        reason: str | None = None,
        *,
        key: str | None = None,
        compensate: bool = False,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Stop a pending, running or waiting instance for good: it ends ``cancelled``.

        Its waiting steps and timers are dropped, its queued jobs do nothing, and a step
        running somewhere finishes with its result discarded. ``reason`` is kept with the
        instance (``instance.cancellation``). With ``compensate=True`` the ``compensate`` of
        every completed step that defines one runs first, the last completed first; the
        instance ends cancelled after them. An instance that has ended (completed, failed,
        cancelled) or is compensating raises ``InstanceNotCancellableError``, and nothing
        changes.
        """
        chosen = backends.storage(storage)
        return backends.runner().cancel(
            cls._identify(id, key, chosen),
            storage=chosen,
            reason=reason,
            compensate=compensate,
            workflow=cls._scope(),
        )

    @classmethod
    def rewind(
        cls,
        id: UUID | str | None = None,
        *,
        to: StepClass | str,
        key: str | None = None,
        compensate: bool = False,
        dry_run: bool = False,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance | RewindPlan:
        """Put an instance back where step ``to`` was about to run, and run on from there.

        ``to`` and every step after it in the graph are forgotten (their results, attempts,
        timers), in one locked write recorded in the history as a rewind; steps before it,
        and parallel branches, keep what they did. A step of the instance still running
        somewhere finishes, and its result is not recorded. With ``compensate=True`` the
        ``compensate`` of the forgotten completed steps runs first, the last completed first.

        ``RewindError`` names the reason, and nothing changes, when ``to`` was never reached,
        is not a step of the instance's version, or the instance cannot be rewound (pending,
        cancelled, compensating or compensated). With ``dry_run`` nothing is written and a
        :class:`RewindPlan` says what would change (steps forgotten, steps active after).
        """
        chosen = backends.storage(storage)
        instance_id = cls._identify(id, key, chosen)
        if dry_run:
            instance = chosen.get(instance_id)
            expect(instance, cls._scope(), None)
            return dry_run_plan(rewind_plan(instance, to), chosen, instance)
        return backends.runner().rewind(
            instance_id, storage=chosen, to=to, compensate=compensate, workflow=cls._scope()
        )

    @classmethod
    def compensate(
        cls,
        id: UUID | str | None = None,
        *,
        key: str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Undo the completed steps of a failed instance: the ``compensate`` of each that
        defines one runs, the last completed first, and the instance ends ``failed`` again,
        with its failure and the compensations in its history.

        ``InstanceNotCompensableError`` (nothing changes) for an instance that has not
        failed, whose steps were compensated already, or with nothing to undo.
        """
        chosen = backends.storage(storage)
        return backends.runner().compensate(
            cls._identify(id, key, chosen), storage=chosen, workflow=cls._scope()
        )

    @classmethod
    def pause(
        cls,
        id: UUID | str | None = None,
        *,
        key: str | None = None,
        reason: str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Hold an instance: nothing of it runs until :meth:`unpause`.

        No step starts; its queued jobs do nothing; its timers wait and fire once it is
        unpaused; an event (``resume``) is accepted and recorded, and the steps it makes
        runnable run once it is unpaused. A step already running finishes and its result is
        recorded. The instance keeps its status; ``runtime_metadata["hephaestus.paused"]``
        says when and why (``reason``). Pausing a paused instance changes nothing;
        ``InstanceNotPausableError`` (nothing changes) for one that has ended. ``cancel``
        lifts the pause.
        """
        chosen = backends.storage(storage)
        return backends.runner().pause(
            cls._identify(id, key, chosen), storage=chosen, reason=reason, workflow=cls._scope()
        )

    @classmethod
    def unpause(
        cls,
        id: UUID | str | None = None,
        *,
        key: str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Release an instance's pause: what waited runs on (its runnable steps run, or are
        enqueued with ``QueuedRunner``; its due timers fire at the worker's next pass).
        Unpausing an instance that is not paused changes nothing."""
        chosen = backends.storage(storage)
        return backends.runner().unpause(
            cls._identify(id, key, chosen), storage=chosen, workflow=cls._scope()
        )

    @classmethod
    def pause_all(
        cls,
        *,
        version: int | None = None,
        reason: str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> int:
        """Hold this workflow (or one ``version`` of it): its new instances are stored paused,
        and every instance of it that has not ended is paused (a step running finishes and
        records its result; nothing after it runs). Returns how many instances it paused.

        On a version class, that version unless told; on a workflow or a versioned workflow,
        every version unless ``version`` is given. Lasts until :meth:`unpause_all`; the hold is
        kept in the storage, for every process. Takes about a second: it pauses the instances
        again once every process has seen the hold (see
        :mod:`~hephaestus_django.runtime.workflow_pauses`).
        """
        return backends.runner().pause_all(
            cls._held(),
            storage=backends.storage(storage),
            version=cls._held_version(version),
            reason=reason,
        )

    @classmethod
    def unpause_all(
        cls, *, version: int | None = None, storage: str | Storage = DEFAULT_ALIAS
    ) -> int:
        """Release the hold :meth:`pause_all` made (the same ``version``), and unpause the
        instances it paused: what waited runs on. Instances paused one by one stay paused.
        Returns how many instances it unpaused."""
        return backends.runner().unpause_all(
            cls._held(), storage=backends.storage(storage), version=cls._held_version(version)
        )

    @classmethod
    def _held(cls) -> type[WorkflowDefinition]:
        """The workflow a hold is made on: refused on the abstract base classes."""
        if cls.is_abstract():
            raise TypeError(
                f"{cls.__qualname__} is abstract: call pause_all()/unpause_all() on a workflow"
            )
        return cls

    @classmethod
    def _held_version(cls, version: int | None) -> int:
        """The version a hold is on: 0 for every version."""
        if version is None:
            return cls.version if cls.umbrella() is not None else 0
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be a positive int, not {version!r}")
        if version not in cls.known_versions():
            known = ", ".join(map(str, cls.known_versions()))
            raise ValueError(f"{cls.__qualname__} has no version {version}; its versions: {known}")
        return version

    @classmethod
    def fork(
        cls,
        id: UUID | str | None = None,
        *,
        at: StepClass | str,
        key: str | None = None,
        context: Mapping[str, Any] | None = None,
        version: int | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Start a new instance (a new id) from a copy of this one as a rewind to ``at`` would
        leave it, and run it; the original is not changed.

        ``context`` is merged into the copy's initial data; ``version`` moves the copy to that
        version of a versioned workflow first (by the upgrade it declares). The copy names its
        original in ``runtime_metadata["hephaestus.forked_from"]``; it has no business key.
        ``RewindError`` (or ``UpgradeError``) when it cannot be forked there: nothing is
        written.
        """
        chosen = backends.storage(storage)
        to = None if version is None else cls.starting(version)
        return backends.runner().fork(
            cls._identify(id, key, chosen),
            storage=chosen,
            at=at,
            context=context,
            to=to,
            workflow=cls._scope(),
        )

    @classmethod
    def get(
        cls,
        id: UUID | str | None = None,
        *,
        key: str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """The stored instance, by id or business ``key``; ``InstanceNotFound`` if absent or
        of another workflow."""
        chosen = backends.storage(storage)
        instance = chosen.get(cls._identify(id, key, chosen))
        if not cls.is_abstract() and not cls.owns(instance.workflow):
            raise InstanceNotFound(
                id, f"it is an instance of {instance.workflow.__qualname__}, not {cls.__qualname__}"
            )
        return instance

    @classmethod
    def list(
        cls,
        /,
        *,
        storage: str | Storage = DEFAULT_ALIAS,
        limit: int | None = None,
        **filters: Any,
    ) -> builtins.list[Instance]:
        """Instances matching ``filters`` (see ``storage.query``), oldest first.

        On a versioned workflow, the instances of every version (``workflow_version=2``
        filters); on one of its version classes, that version's.
        """
        for name, value in cls._scope_filters().items():
            filters.setdefault(name, value)
        return backends.storage(storage).query(limit=limit, **filters)

    # --- the async twins, for async views and tasks (Django's ``a`` prefix) ---------------
    # Made from their verbs (``async_twin``): the same arguments, always.

    astart = async_twin(
        start,
        """``start`` from async code: it runs in a worker thread (see
        :mod:`~hephaestus_django.runtime.asynchronous`), so an async view never meets
        ``SynchronousOnlyOperation``. With ``LocalRunner`` the steps run there too, until the
        instance waits or ends; with ``QueuedRunner`` it returns once the jobs are enqueued.""",
    )
    aresume = async_twin(resume)
    aretry = async_twin(retry)
    acancel = async_twin(cancel)
    arewind = async_twin(rewind)
    acompensate = async_twin(compensate)
    afork = async_twin(fork)
    apause = async_twin(pause)
    aunpause = async_twin(unpause)
    apause_all = async_twin(pause_all)
    aunpause_all = async_twin(unpause_all)
    aget = async_twin(get)
    alist = async_twin(list)

    @classmethod
    def _scope(cls) -> type[WorkflowDefinition] | None:
        """The workflow whose instances this class acts on (``owns``); None on an abstract
        base class, which acts on every instance."""
        return None if cls.is_abstract() else cls

    @classmethod
    def _scope_filters(cls) -> dict[str, Any]:
        """The query filters that select this class's instances: its path (an umbrella's,
        for a version class), and a version class's version."""
        if cls.is_abstract():
            return {}
        if cls.umbrella() is not None:
            return {"workflow": cls, "workflow_version": cls.version}
        return {"workflow": cls}

    @classmethod
    def _identify(cls, id: UUID | str | None, key: str | None, storage: Storage) -> UUID | str:
        """The id of the instance named by ``id`` or by its business ``key`` (exactly one).

        Under a key, the instance holding it (one that has not completed or been cancelled)
        if any, else the newest: with ``key_scope = "active"`` or ``"none"`` a key may name
        several instances over time.
        """
        if (id is None) == (key is None):
            raise TypeError("name the instance by its id or by key=, not both nor neither")
        if id is not None:
            return id
        found = storage.query(key=key, **cls._scope_filters())
        if not found:
            of = "" if cls.is_abstract() else f" of {cls.__qualname__}"
            raise InstanceNotFound(key, f"no instance{of} has the business key {key!r}")
        holding = [instance for instance in found if instance.status not in FINISHED]
        return (holding or found)[-1].id


class VersionedWorkflow(VersionedDefinition, Workflow):
    """Several versions of one workflow side by side (see :mod:`~hephaestus_django.core.versions`).

    ::

        class Onboarding(VersionedWorkflow):
            versions = (OnboardingV1, OnboardingV2)
            current = 2

    ``Onboarding.start(context)`` starts on the current version (``version=1`` chooses);
    ``get``, ``resume``, ``retry``, ``cancel`` and ``list`` see the instances of every version,
    each running on its own version's definition. ``upgrade`` moves an instance to a newer
    version, by the ``upgrade_from`` that version declares.
    """

    abstract = True

    @classmethod
    def upgrade(
        cls,
        id: UUID | str | None = None,
        *,
        key: str | None = None,
        to_version: int | None = None,
        dry_run: bool = False,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Upgrade an instance to version ``to_version`` (default: the current one) and return it.

        The instance's steps, results, timers and history are carried over by the
        ``upgrade_from`` the new version declares (:mod:`~hephaestus_django.core.upgrades`),
        under the instance's row lock: an upgrade racing a resume is applied before or after
        it, never in between. Then what is runnable runs on the new version's steps. An
        instance the upgrade does not cover raises ``UpgradeError`` naming the step and the
        reason, and nothing changes. With ``dry_run`` the upgraded instance is computed and
        returned, and nothing is written.
        """
        to = cls.starting(to_version)
        chosen = backends.storage(storage)
        instance_id = cls._identify(id, key, chosen)
        if dry_run:
            instance = chosen.get(instance_id)
            expect(instance, cls, None)
            return upgrade_instance(instance, to=to, now=chosen.now())
        return backends.runner().upgrade(instance_id, storage=chosen, to=to, workflow=cls)

    aupgrade = async_twin(upgrade)


def chosen_version(
    workflow: type[WorkflowDefinition], context: object, **options: Any
) -> int | None:
    """What a versioned workflow's ``version_for`` chooses for a new instance (None for a
    plain workflow, and when it chooses none); a number that is not one of its versions is
    refused with ``InvalidInstanceError`` naming the hook."""
    choose = getattr(workflow, "version_for", None)
    if choose is None:
        return None
    given = context if isinstance(context, Mapping) else {}
    chosen = choose(MappingProxyType(dict(given)), **options)
    if chosen is not None and (isinstance(chosen, bool) or chosen not in workflow.known_versions()):
        known = ", ".join(map(str, workflow.known_versions()))
        raise InvalidInstanceError(
            f"{workflow.__qualname__}.version_for() chose version {chosen!r}, which is not one "
            f"of its versions ({known}); return one of them, or None for the current one"
        )
    return chosen
