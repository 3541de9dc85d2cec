"""The storage contract every backend implements.

::

    storage.get(instance_id) -> Instance        # InstanceNotFound (also for a malformed id)
    storage.put(instance) -> None               # upsert; StaleInstanceError on a stale read
    storage.delete(instance_id) -> None         # idempotent
    storage.query(limit=None, **filters) -> list[Instance]

``put`` records the stored ``revision``, ``inserted_at``, ``updated_at`` and
``workflow_version`` on the instance it was given, so the same object can be
put again. A put whose ``revision`` is not the stored one raises
:class:`StaleInstanceError` and writes nothing: an update is never lost
silently. ``workflow_version`` and ``inserted_at`` are set by the first put and
never changed by later ones. ``query`` returns instances oldest first (by
``inserted_at``, then id) and leaves out, with a logged error, rows that cannot
be decoded, so one corrupt row never hides the others; ``get`` raises for it.

The test-suite in ``tests/contract`` runs against every backend.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from hephaestus_django.core.instance import Instance


@runtime_checkable
class Storage(Protocol):
    """What the runner and the ``Workflow`` facade need from a storage backend."""

    def get(self, instance_id: UUID | str) -> Instance:
        """The stored instance; ``InstanceNotFound`` when there is none."""
        ...

    def put(self, instance: Instance) -> None:
        """Insert, or replace the stored instance if ``instance.revision`` is current."""
        ...

    def delete(self, instance_id: UUID | str) -> None:
        """Remove the instance; no error when it is absent."""
        ...

    def query(self, *, limit: int | None = None, **filters: Any) -> list[Instance]:
        """Instances matching every filter, oldest first."""
        ...
