"""Where the ``Workflow`` facade finds its storages and its runner.

Without Django, configure them in code::

    from hephaestus_django.runtime import InMemoryStorage, configure
    configure(storages={"default": InMemoryStorage()})

Inside Django the app installs a *provider* at start-up that resolves aliases
through ``settings.HEPHAESTUS`` (``hephaestus_django.storages``). Storages
given to :func:`configure` take precedence over the provider, which lets a
test swap in an ``InMemoryStorage`` for one block of code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from hephaestus_django.core.errors import BackendNotConfigured
from hephaestus_django.runtime.contract import Storage

if TYPE_CHECKING:
    from hephaestus_django.runtime.verbs import Runner

DEFAULT_ALIAS = "default"

logger = logging.getLogger("hephaestus_django.runner")


class BackendProvider(Protocol):
    """Resolves storage aliases and the runner, e.g. from Django settings."""

    def storage(self, alias: str) -> Storage: ...

    def runner(self) -> Runner: ...

    def alias_of(self, storage: Storage) -> str | None:
        """The alias ``storage`` was built for, if it was built by this provider."""
        ...


class Backends:
    """The process-wide registry of configured storages and runner."""

    def __init__(self) -> None:
        self._storages: dict[str, Storage] = {}
        self._runner: Runner | None = None
        self._provider: BackendProvider | None = None
        self._lock = threading.Lock()
        self._warned = False
        """Whether the warning of :meth:`_warn_of_a_queued_runner` was given (once a process)."""

    def configure(
        self, *, storages: Mapping[str, Storage] | None = None, runner: Runner | None = None
    ) -> None:
        """Replace the storages and runner configured in code (``configure()`` clears them)."""
        for alias, storage in (storages or {}).items():
            if not isinstance(storage, Storage):
                raise TypeError(
                    f"storage {alias!r} must implement get/put/delete/query, not {storage!r}"
                )
        with self._lock:
            self._storages = dict(storages or {})
            self._runner = runner
        if storages and runner is None:
            self._warn_of_a_queued_runner()

    def _warn_of_a_queued_runner(self) -> None:
        """Say once that storages configured in code still run on the settings' QueuedRunner.

        ``configure(storages={"default": InMemoryStorage()})`` in a project whose settings name
        a ``QueuedRunner`` sends the jobs to the real queue, where no worker sees that storage:
        the instances stay ``running`` and nothing says why.
        """
        if self._warned or self._provider is None:
            return
        try:
            chosen = self._provider.runner()
        except Exception:  # a misconfigured runner is the system checks' to report
            return
        from hephaestus_django.runtime.queued import QueuedRunner

        if isinstance(chosen, QueuedRunner):
            self._warned = True
            logger.warning(
                "configure(storages=...) was given no runner, so instances run on the runner "
                "of settings.HEPHAESTUS['RUNNER'], %r, whose jobs go to the job engine's queue; "
                "to run them here, pass one: configure(storages=..., runner=LocalRunner())",
                chosen,
            )

    def install_provider(self, provider: BackendProvider | None) -> None:
        """Set (or remove, with None) the provider consulted after code configuration."""
        self._provider = provider

    def storage(self, storage: str | Storage = DEFAULT_ALIAS) -> Storage:
        """The storage named ``storage``, or ``storage`` itself if it is one."""
        if not isinstance(storage, str):
            if isinstance(storage, Storage):
                return storage
            raise TypeError(f"storage must be an alias or a storage backend, not {storage!r}")
        configured = self._storages.get(storage)
        if configured is not None:
            return configured
        if self._provider is not None:
            return self._provider.storage(storage)
        known = ", ".join(sorted(self._storages)) or "none"
        raise BackendNotConfigured(
            f"no storage named {storage!r} (configured: {known}); add 'hephaestus_django' to "
            f"INSTALLED_APPS, or call hephaestus_django.runtime.configure(storages={{"
            f"{storage!r}: InMemoryStorage()}})"
        )

    def alias_of(self, storage: Storage) -> str:
        """The alias under which ``storage`` is configured: what a queued job names it by.

        A job engine's worker runs in another process, so a job cannot carry a storage
        object, only the name that process resolves again.
        """
        for alias, configured in self._storages.items():
            if configured is storage:
                return alias
        found = self._provider.alias_of(storage) if self._provider is not None else None
        if found is not None:
            return found
        raise BackendNotConfigured(
            f"{storage!r} is not a configured storage; QueuedRunner's jobs name their storage by "
            f"alias, so pass storage= as an alias of settings.HEPHAESTUS['STORAGES'] (or of "
            f"hephaestus_django.runtime.configure(storages=...))"
        )

    def runner(self) -> Runner:
        """The configured runner; a ``LocalRunner`` when nothing else is configured."""
        if self._runner is not None:
            return self._runner
        if self._provider is not None:
            return self._provider.runner()
        with self._lock:
            if self._runner is None:
                from hephaestus_django.runtime.runner import LocalRunner

                self._runner = LocalRunner()
            return self._runner


backends = Backends()
configure = backends.configure
