"""Dotted path -> class, for every workflow and step class ever defined.

Stored rows name their workflow and steps by dotted path. Turning such a name
back into a class goes through this registry only: nothing is imported because
a database row says so, which keeps a tampered row from loading arbitrary code.

Classes register themselves when their class statement runs. The registry holds
them weakly, so classes defined inside functions (tests, generated workflows)
go away with their last reference; a module-level class is kept alive by its
module. Defining a class again under the same path (module reload, Django's
autoreloader) replaces the old entry.
"""

from __future__ import annotations

import threading
import weakref
from typing import Generic, TypeVar
from uuid import UUID

from hephaestus_django.core.errors import UnknownWorkflowError
from hephaestus_django.core.naming import dotted_path

C = TypeVar("C", bound=type)


class Registry(Generic[C]):
    """A thread-safe, weak mapping of dotted paths to classes of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: weakref.WeakValueDictionary[str, C] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def register(self, cls: C) -> None:
        with self._lock:
            self._classes[dotted_path(cls)] = cls

    def resolve(self, name: str, *, instance_id: UUID | None = None) -> C:
        """The class registered as ``name``; ``UnknownWorkflowError`` if none."""
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownWorkflowError(name, kind=self.kind, instance_id=instance_id) from None

    def unregister(self, name: str, cls: C) -> None:
        """Forget ``name`` if it is registered as ``cls`` (a newer class under it stays)."""
        with self._lock:
            if self._classes.get(name) is cls:
                del self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def names(self) -> list[str]:
        """Every registered dotted path, sorted."""
        with self._lock:
            return sorted(self._classes.keys())
