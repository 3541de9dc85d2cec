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
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from hephaestus_django.core.errors import InstanceNotFound
from hephaestus_django.core.graph import StepClass
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.workflow import WorkflowDefinition
from hephaestus_django.runtime.config import DEFAULT_ALIAS, backends
from hephaestus_django.runtime.storage import Storage


class Workflow(WorkflowDefinition):
    """Base class of runnable workflows (see :class:`WorkflowDefinition` for the body)."""

    abstract = True

    @classmethod
    def start(
        cls,
        context: Mapping[str, Any] | None = None,
        *,
        id: UUID | str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
        metadata: Mapping[str, Any] | None = None,
    ) -> UUID:
        """Start an instance with ``context`` as its initial data; return its id.

        The instance is persisted before its first step runs, then runs until
        it waits, completes or fails. ``id`` lets the caller choose the id (a
        UUID); a value that cannot be stored raises ``SerializationError``
        and nothing is written.
        """
        runner = backends.runner()
        return runner.start(
            cls, context, storage=backends.storage(storage), id=id, metadata=metadata
        ).id

    @classmethod
    def resume(
        cls,
        id: UUID | str,
        event: str,
        data: Any = None,
        *,
        step: StepClass | str | None = None,
        storage: str | Storage = DEFAULT_ALIAS,
    ) -> Instance:
        """Deliver ``event`` to a waiting step (``data`` becomes its result) and run on.

        Works from any process. ``step`` picks the step when several waiting
        steps declare the same event.
        """
        return backends.runner().resume(
            id,
            event,
            data,
            storage=backends.storage(storage),
            step=step,
            workflow=None if cls.is_abstract() else cls,
        )

    @classmethod
    def retry(cls, id: UUID | str, *, storage: str | Storage = DEFAULT_ALIAS) -> Instance:
        """Run a failed instance's failed step again, and what follows."""
        return backends.runner().retry(
            id, storage=backends.storage(storage), workflow=None if cls.is_abstract() else cls
        )

    @classmethod
    def cancel(
        cls,
        id: UUID | str,
        reason: str | None = None,
        *,
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
        return backends.runner().cancel(
            id,
            storage=backends.storage(storage),
            reason=reason,
            compensate=compensate,
            workflow=None if cls.is_abstract() else cls,
        )

    @classmethod
    def get(cls, id: UUID | str, *, storage: str | Storage = DEFAULT_ALIAS) -> Instance:
        """The stored instance; ``InstanceNotFound`` if absent or of another workflow."""
        instance = backends.storage(storage).get(id)
        if not cls.is_abstract() and not issubclass(instance.workflow, cls):
            raise InstanceNotFound(
                id, f"it is an instance of {instance.workflow.__qualname__}, not {cls.__qualname__}"
            )
        return instance

    @classmethod
    def list(
        cls, *, storage: str | Storage = DEFAULT_ALIAS, limit: int | None = None, **filters: Any
    ) -> builtins.list[Instance]:
        """Instances matching ``filters`` (see ``storage.query``), oldest first."""
        if not cls.is_abstract():
            filters.setdefault("workflow", cls)
        return backends.storage(storage).query(limit=limit, **filters)
