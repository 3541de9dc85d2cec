"""What the contract suite needs from an adapter, and the in-memory dispatcher's harness."""

from __future__ import annotations

from typing import Any, Protocol

from hephaestus_django.runtime import InMemoryStorage
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.dispatch import Dispatcher, Job
from hephaestus_django.runtime.memory_dispatch import InMemoryDispatcher
from hephaestus_django.runtime.queued import receive


class Harness(Protocol):
    """An adapter under test: its dispatcher, a storage it serves, and its workers' part.

    The suite configures ``storage`` as ``"default"`` and a ``QueuedRunner`` on
    ``dispatcher``; the harness runs what was enqueued the way its engine's workers do.
    """

    storage: Storage
    dispatcher: Dispatcher

    def queued(self) -> list[Job]:
        """The jobs enqueued and not yet run, oldest first, due or not."""
        ...

    def drain(self) -> None:
        """Run every due job, and those they enqueue, until none is due."""
        ...

    def deliver(self, payload: Any) -> None:
        """Have the engine deliver a job with this raw payload (well-formed or not)."""
        ...

    def close(self) -> None:
        """Release what the harness holds."""
        ...


class MemoryHarness:
    """``InMemoryDispatcher`` over an ``InMemoryStorage``: the reference."""

    def __init__(self) -> None:
        self.storage = InMemoryStorage()
        self.dispatcher = InMemoryDispatcher()

    def queued(self) -> list[Job]:
        return self.dispatcher.jobs

    def drain(self) -> None:
        self.dispatcher.drain()

    def deliver(self, payload: Any) -> None:
        receive(payload)

    def close(self) -> None:
        pass
