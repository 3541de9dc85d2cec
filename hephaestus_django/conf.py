"""``settings.HEPHAESTUS``: its defaults, and the backends it names.

::

    HEPHAESTUS = {
        "STORAGES": {
            "default": {
                "BACKEND": "hephaestus_django.storage.DjangoStorage",
                "OPTIONS": {"using": "default"},
            },
        },
        "RUNNER": {"BACKEND": "hephaestus_django.runtime.LocalRunner", "OPTIONS": {}},
    }

Every key has a default, so a project without the setting stores in its
``default`` database. Backends are built lazily, once per alias, like
Django's ``caches`` and ``storages`` (:data:`storages`); both caches are
dropped when the setting changes (``override_settings``). Mistakes are
reported by the system checks in :mod:`hephaestus_django.checks` at
``manage.py check``; the errors raised here are the last line of defence.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from asgiref.local import Local
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.connection import BaseConnectionHandler
from django.utils.module_loading import import_string

from hephaestus_django.core.errors import BackendNotConfigured
from hephaestus_django.runtime.runner import Runner
from hephaestus_django.runtime.storage import Storage

SETTING = "HEPHAESTUS"
DEFAULT_STORAGE_BACKEND = "hephaestus_django.storage.DjangoStorage"
DEFAULT_RUNNER_BACKEND = "hephaestus_django.runtime.LocalRunner"
TOP_LEVEL_KEYS = ("STORAGES", "RUNNER")
BACKEND_KEYS = ("BACKEND", "OPTIONS")
DOCS = "See docs/settings.md for every setting and its default."


class InvalidBackendError(ImproperlyConfigured):
    """A backend named in ``settings.HEPHAESTUS`` cannot be built.

    ``check_id`` and ``hint`` let the system checks report it exactly as it
    would be raised.
    """

    def __init__(self, message: str, *, check_id: str = "hephaestus.E006", hint: str = "") -> None:
        super().__init__(message)
        self.check_id = check_id
        self.hint = hint


class InvalidStorageBackendError(InvalidBackendError):
    """A storage in ``settings.HEPHAESTUS["STORAGES"]`` cannot be built."""


class StorageNotConfigured(InvalidStorageBackendError, BackendNotConfigured):
    """No storage is configured under the alias asked for.

    Also a :class:`~hephaestus_django.core.errors.BackendNotConfigured`, the
    error the runtime raises for an unknown alias outside Django, so one
    ``except`` covers both.
    """


class InvalidRunnerBackendError(InvalidBackendError):
    """``settings.HEPHAESTUS["RUNNER"]`` cannot be built."""


def hephaestus_setting() -> Mapping[str, Any]:
    """The raw ``HEPHAESTUS`` setting (``{}`` when absent)."""
    value = getattr(settings, SETTING, {})
    return value if isinstance(value, Mapping) else {}


def storage_settings() -> dict[str, Any]:
    """``STORAGES`` with defaults filled in."""
    configured = hephaestus_setting().get("STORAGES")
    if configured is None:
        return {"default": {"BACKEND": DEFAULT_STORAGE_BACKEND, "OPTIONS": {"using": "default"}}}
    return dict(configured) if isinstance(configured, Mapping) else {}


def runner_settings() -> Mapping[str, Any]:
    """``RUNNER`` with defaults filled in."""
    configured = hephaestus_setting().get("RUNNER")
    if configured is None:
        return {"BACKEND": DEFAULT_RUNNER_BACKEND, "OPTIONS": {}}
    return configured if isinstance(configured, Mapping) else {}


def build_backend(
    config: object,
    where: str,
    error: type[InvalidBackendError],
    example: str = DEFAULT_STORAGE_BACKEND,
) -> Any:
    """Import ``config["BACKEND"]`` and call it with ``config["OPTIONS"]``.

    Every way this can go wrong becomes ``error`` with a message naming
    ``where`` in the settings; the system checks call it too, so the messages
    are the same in both places. ``example`` is the dotted path hints suggest.
    """
    if not isinstance(config, Mapping):
        raise error(
            f"{where} must be a dict with 'BACKEND' and 'OPTIONS', not {config!r}.",
            check_id="hephaestus.E003",
            hint=DOCS,
        )
    if "BACKEND" not in config:
        raise error(
            f"{where} has no 'BACKEND'.",
            check_id="hephaestus.E004",
            hint=f"Name the backend's dotted path, e.g. {example!r}.",
        )
    backend, options = config["BACKEND"], config.get("OPTIONS", {})
    if not isinstance(backend, str) or not backend:
        raise error(
            f"{where}['BACKEND'] must be a dotted path string, not {backend!r}.",
            check_id="hephaestus.E005",
            hint=f"Name the backend's dotted path, e.g. {example!r}.",
        )
    if not isinstance(options, Mapping):
        raise error(f"{where}['OPTIONS'] must be a dict, not {options!r}.", hint=DOCS)
    try:
        backend_class = import_string(backend)
    except ImportError as exc:
        raise error(
            f"{where}['BACKEND'] {backend!r} could not be imported: {exc}",
            check_id="hephaestus.E005",
            hint="Check the dotted path, and that the package providing it is installed.",
        ) from exc
    try:
        return backend_class(**options)
    except (TypeError, ValueError) as exc:
        raise error(
            f"{where}['OPTIONS'] do not suit {backend}: {exc}",
            hint=f"Check the OPTIONS against the backend's parameters. {DOCS}",
        ) from exc


class StorageHandler(BaseConnectionHandler):  # type: ignore[misc]
    """``storages[alias]``: the storage backend configured under that alias."""

    settings_name = SETTING
    exception_class = InvalidStorageBackendError

    def configure_settings(self, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return dict(settings) if settings is not None else storage_settings()

    def create_connection(self, alias: str) -> Storage:
        where = f"settings.HEPHAESTUS['STORAGES'][{alias!r}]"
        storage: Storage = build_backend(self.settings[alias], where, InvalidStorageBackendError)
        return storage

    def __getitem__(self, alias: str) -> Storage:
        if alias not in self.settings:
            known = ", ".join(repr(name) for name in self.settings) or "none"
            raise StorageNotConfigured(
                f"Could not find config for {alias!r} in settings.HEPHAESTUS['STORAGES'] "
                f"(configured: {known})."
            )
        storage: Storage = super().__getitem__(alias)
        return storage

    def reset(self) -> None:
        """Forget the settings and every built backend."""
        self.__dict__.pop("settings", None)
        self._settings = None
        self._connections = Local(self.thread_critical)


storages = StorageHandler()
"""The configured storages, by alias: ``storages["default"]``."""


class _RunnerHolder:
    """The runner built from settings, once, until the setting changes."""

    def __init__(self) -> None:
        self._runner: Runner | None = None
        self._lock = threading.Lock()

    def get(self) -> Runner:
        with self._lock:
            if self._runner is None:
                self._runner = build_backend(
                    runner_settings(),
                    "settings.HEPHAESTUS['RUNNER']",
                    InvalidRunnerBackendError,
                    DEFAULT_RUNNER_BACKEND,
                )
            return self._runner

    def reset(self) -> None:
        with self._lock:
            self._runner = None


runner = _RunnerHolder()


class DjangoBackends:
    """Lets the runtime's ``Workflow`` facade find backends through the settings."""

    def storage(self, alias: str) -> Storage:
        return storages[alias]

    def runner(self) -> Runner:
        return runner.get()


@receiver(setting_changed)
def _reset_backends(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING, "DATABASES"):
        storages.reset()
        runner.reset()
