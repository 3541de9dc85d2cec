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

import difflib
import inspect
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.connection import BaseConnectionHandler
from django.utils.module_loading import import_string

from hephaestus_django.core.errors import BackendNotConfigured
from hephaestus_django.core.policies import Retry, set_project_retry
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.limits import DEFAULT_MAX_STATE_BYTES, set_max_state_bytes
from hephaestus_django.runtime.schedules import (
    DEFAULT_CATCH_UP_LIMIT,
    DEFAULT_KEY,
    Schedule,
    Scheduler,
    schedule_problems,
)
from hephaestus_django.runtime.verbs import Runner

logger = logging.getLogger("hephaestus_django.schedules")

SETTING = "HEPHAESTUS"
DEFAULT_STORAGE_BACKEND = "hephaestus_django.storage.DjangoStorage"
DEFAULT_RUNNER_BACKEND = "hephaestus_django.runtime.LocalRunner"
TOP_LEVEL_KEYS = (
    "STORAGES",
    "RUNNER",
    "TELEMETRY",
    "SCHEDULES",
    "MAX_STATE_BYTES",
    "DEFAULT_RETRY",
)
SCHEDULE_KEYS = (
    "WORKFLOW",
    "CRON",
    "TIMEZONE",
    "CONTEXT",
    "KEY",
    "MISSED",
    "CATCH_UP_LIMIT",
    "STORAGE",
)
"""The keys of one entry of ``HEPHAESTUS["SCHEDULES"]``; WORKFLOW and CRON are required."""
BACKEND_KEYS = ("BACKEND", "OPTIONS")
SETTINGS_DOCS = Path(__file__).resolve().parent / "docs" / "settings.md"
"""The settings reference, shipped inside the package so that an installed copy has it."""
DOCS = f"See {SETTINGS_DOCS} for every setting and its default."


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
    """The ``HEPHAESTUS`` setting (``{}`` when absent); anything but a dict is refused."""
    value = getattr(settings, SETTING, {})
    if not isinstance(value, Mapping):
        raise InvalidBackendError(
            f"settings.{SETTING} must be a dict, not {type(value).__name__}.",
            check_id="hephaestus.E001",
            hint=f"Use {{'STORAGES': {{...}}, 'RUNNER': {{...}}}} or leave it out. {DOCS}",
        )
    return value


def telemetry_enabled() -> bool:
    """``HEPHAESTUS["TELEMETRY"]``: trace and measure with OpenTelemetry when it is installed
    (True, the default), or never (False). Anything else counts as True here and is reported
    by check ``hephaestus.E015``."""
    try:
        return hephaestus_setting().get("TELEMETRY", True) is not False
    except InvalidBackendError:
        return True


def max_state_bytes() -> int | None:
    """``HEPHAESTUS["MAX_STATE_BYTES"]``: the longest stored state, in bytes of JSON (default
    1 MiB; None: no bound). A value that is neither is refused (check ``hephaestus.E016``)."""
    value = hephaestus_setting().get("MAX_STATE_BYTES", DEFAULT_MAX_STATE_BYTES)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidBackendError(
            f"settings.{SETTING}['MAX_STATE_BYTES'] must be a positive int (bytes) or None, "
            f"not {value!r}.",
            check_id="hephaestus.E016",
            hint=f"The default is {DEFAULT_MAX_STATE_BYTES} (1 MiB); None removes the bound. "
            f"{DOCS}",
        )
    return value


def default_retry() -> Retry | None:
    """``HEPHAESTUS["DEFAULT_RETRY"]``: the retry policy of every step whose step and workflow
    declare none (default None: one attempt). A ``Retry(...)``, or a dict of its arguments; a
    malformed one is refused (check ``hephaestus.E017``)."""
    value = hephaestus_setting().get("DEFAULT_RETRY")
    if value is None or isinstance(value, Retry):
        policy = value
    elif isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        try:
            policy = Retry(**value)
        except TypeError as error:
            raise _retry_error(value, str(error)) from None
    else:
        raise _retry_error(value, "it must be a Retry(...), a dict of its arguments, or None")
    problems = policy.problems() if policy is not None else []
    if problems:
        raise _retry_error(value, "; ".join(problems))
    return policy


def _retry_error(value: object, problem: str) -> InvalidBackendError:
    return InvalidBackendError(
        f"settings.{SETTING}['DEFAULT_RETRY'] is malformed ({value!r}): {problem}.",
        check_id="hephaestus.E017",
        hint="For example Retry(max_attempts=5) from hephaestus_django, or "
        f"{{'max_attempts': 5, 'backoff': timedelta(seconds=1)}}. {DOCS}",
    )


def apply_policies() -> None:
    """Hand ``MAX_STATE_BYTES`` and ``DEFAULT_RETRY`` to the runtime (at start-up and when
    the setting changes). A malformed value leaves the defaults in place: the system checks
    report it, and ``manage.py`` refuses to run with it."""
    try:
        set_max_state_bytes(max_state_bytes())
    except InvalidBackendError:
        set_max_state_bytes(DEFAULT_MAX_STATE_BYTES)
    try:
        set_project_retry(default_retry())
    except InvalidBackendError:
        set_project_retry(None)


def storage_settings() -> dict[str, Any]:
    """``STORAGES`` with defaults filled in; a malformed value is refused, never replaced."""
    configured = hephaestus_setting().get("STORAGES")
    if configured is None:
        return {"default": {"BACKEND": DEFAULT_STORAGE_BACKEND, "OPTIONS": {"using": "default"}}}
    bad_aliases = (
        [alias for alias in configured if not isinstance(alias, str)]
        if isinstance(configured, Mapping)
        else None
    )
    if bad_aliases is None or bad_aliases:
        raise InvalidStorageBackendError(
            f"settings.{SETTING}['STORAGES'] must be a dict of alias (a string) -> "
            f"{{'BACKEND': ..., 'OPTIONS': {{...}}}}, not {configured!r}.",
            check_id="hephaestus.E003",
            hint=f"For example {{'default': {{'BACKEND': {DEFAULT_STORAGE_BACKEND!r}, "
            f"'OPTIONS': {{'using': 'default'}}}}}}. {DOCS}",
        )
    return dict(configured)


def runner_settings() -> object:
    """``RUNNER`` with defaults filled in (checked when the runner is built)."""
    configured = hephaestus_setting().get("RUNNER")
    if configured is None:
        return {"BACKEND": DEFAULT_RUNNER_BACKEND, "OPTIONS": {}}
    return configured


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
            hint=f"For example {{'BACKEND': {example!r}, 'OPTIONS': {{}}}}. {DOCS}",
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
    if not callable(backend_class):
        raise error(
            f"{where}['BACKEND'] {backend!r} is not a class (it is a "
            f"{type(backend_class).__name__}).",
            check_id="hephaestus.E007",
            hint=f"Name the backend class's dotted path, e.g. {example!r}.",
        )
    try:
        return backend_class(**options)
    except (TypeError, ValueError) as exc:
        raise error(
            f"{where}['OPTIONS'] do not suit {backend}: {exc}",
            hint=_options_hint(backend_class, options),
        ) from exc


def _options_hint(backend_class: Any, options: Mapping[str, Any]) -> str:
    """Name the parameters the backend takes, with a did-you-mean for a misspelt option."""
    try:
        parameters = [
            name
            for name, parameter in inspect.signature(backend_class).parameters.items()
            if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return f"Check the OPTIONS against the backend's parameters. {DOCS}"
    guesses = [
        f"{option!r} -> {close[0]!r}"
        for option in options
        if option not in parameters
        and (close := difflib.get_close_matches(str(option), parameters, n=1))
    ]
    did_you_mean = f"Did you mean {', '.join(guesses)}? " if guesses else ""
    return f"{did_you_mean}The backend takes: {', '.join(parameters) or 'no options'}. {DOCS}"


class StorageHandler(BaseConnectionHandler):  # type: ignore[misc]
    """``storages[alias]``: the storage backend configured under that alias.

    Unlike Django's database connections, a storage is one object per process
    (not per thread): an ``InMemoryStorage`` configured here must be the same
    store for every thread, and ``DjangoStorage`` is thread-safe anyway.
    """

    settings_name = SETTING
    exception_class = StorageNotConfigured

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, Storage] = {}
        self._lock = threading.Lock()

    def configure_settings(self, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return dict(settings) if settings is not None else storage_settings()

    def create_connection(self, alias: str) -> Storage:
        where = f"settings.HEPHAESTUS['STORAGES'][{alias!r}]"
        storage: Storage = build_backend(self.settings[alias], where, InvalidStorageBackendError)
        return storage

    def __getitem__(self, alias: str) -> Storage:
        with self._lock:
            built = self._built.get(alias)
            if built is None:
                if alias not in self.settings:
                    known = ", ".join(repr(name) for name in self.settings) or "none"
                    raise StorageNotConfigured(
                        f"Could not find config for {alias!r} in settings.HEPHAESTUS['STORAGES'] "
                        f"(configured: {known})."
                    )
                built = self._built[alias] = self.create_connection(alias)
            return built

    def __setitem__(self, alias: str, storage: Storage) -> None:
        with self._lock:
            self._built[alias] = storage

    def __delitem__(self, alias: str) -> None:
        with self._lock:
            del self._built[alias]

    def all(self, initialized_only: bool = False) -> list[Storage]:
        if initialized_only:
            with self._lock:
                return list(self._built.values())
        return [self[alias] for alias in self]

    def alias_of(self, storage: Storage) -> str | None:
        """The alias ``storage`` was built (or set) for; None if it is none of ours."""
        with self._lock:
            return next((alias for alias, built in self._built.items() if built is storage), None)

    def reset(self) -> None:
        """Forget the settings and every built backend."""
        with self._lock:
            self.__dict__.pop("settings", None)
            self._settings = None
            self._built = {}


storages = StorageHandler()
"""The configured storages, by alias: ``storages["default"]``."""


class InvalidScheduleError(InvalidBackendError):
    """An entry of ``settings.HEPHAESTUS["SCHEDULES"]`` is not a schedule (check E030)."""


def schedule_settings() -> dict[str, Schedule]:
    """``HEPHAESTUS["SCHEDULES"]`` as :class:`~hephaestus_django.runtime.schedules.Schedule`
    objects, by name (``{}`` when absent). A malformed entry (not a dict, a missing or unknown
    key) raises :class:`InvalidScheduleError`; what its values mean is checked by
    :func:`~hephaestus_django.runtime.schedules.schedule_problems`."""
    configured = hephaestus_setting().get("SCHEDULES")
    if configured is None:
        return {}
    where = f"settings.{SETTING}['SCHEDULES']"
    if not isinstance(configured, Mapping):
        raise InvalidScheduleError(
            f"{where} must be a dict of name -> {{'WORKFLOW': ..., 'CRON': ...}}, "
            f"not {type(configured).__name__}.",
            check_id="hephaestus.E030",
            hint=f"For example {{'nightly': {{'WORKFLOW': 'reports.workflows.Nightly', "
            f"'CRON': '0 2 * * *'}}}}. {DOCS}",
        )
    built: dict[str, Schedule] = {}
    for name, entry in configured.items():
        here = f"{where}[{name!r}]"
        bad_name = not isinstance(name, str) or not name or len(name) > 255
        if bad_name or not isinstance(entry, Mapping):
            raise InvalidScheduleError(
                f"{here} must be a non-empty name (at most 255 characters) -> a dict, "
                f"not {entry!r}.",
                check_id="hephaestus.E030",
                hint=f"Each schedule is {{'WORKFLOW': ..., 'CRON': ..., ...}}. {DOCS}",
            )
        unknown = [key for key in entry if key not in SCHEDULE_KEYS]
        missing = [key for key in ("WORKFLOW", "CRON") if key not in entry]
        if unknown or missing:
            said = "; ".join(
                ([f"unknown key(s) {', '.join(map(repr, unknown))}"] if unknown else [])
                + ([f"no {' or '.join(missing)}"] if missing else [])
            )
            raise InvalidScheduleError(
                f"{here} is not a schedule: {said}.",
                check_id="hephaestus.E030",
                hint=f"The keys are {', '.join(SCHEDULE_KEYS)}; WORKFLOW and CRON are "
                f"required. {DOCS}",
            )
        built[name] = Schedule(
            name=name,
            workflow=entry["WORKFLOW"],
            cron=entry["CRON"],
            timezone=entry.get("TIMEZONE", "UTC"),
            context=entry.get("CONTEXT", {}),
            key=entry.get("KEY", DEFAULT_KEY),
            missed=entry.get("MISSED", "skip"),
            catch_up_limit=entry.get("CATCH_UP_LIMIT", DEFAULT_CATCH_UP_LIMIT),
            storage=entry.get("STORAGE", "default"),
        )
    return built


def scheduler() -> Scheduler:
    """A :class:`~hephaestus_django.runtime.schedules.Scheduler` of the configured schedules
    that can run, with the configured runner. A schedule with a problem (the system checks
    report it) is left out, with an error logged: nothing of it starts."""
    runnable = []
    try:
        configured = schedule_settings()
    except InvalidScheduleError as error:
        logger.error("no schedule runs: %s", error)
        configured = {}
    for schedule in configured.values():
        problems = schedule_problems(schedule)
        if schedule.storage not in storages.settings:
            problems.append(("storage", f"no storage named {schedule.storage!r}", ""))
        if problems:
            logger.error(
                "schedule %r is left out: %s", schedule.name, "; ".join(p[1] for p in problems)
            )
            continue
        runnable.append(schedule)
    return Scheduler(runnable, runner.get())


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

    def alias_of(self, storage: Storage) -> str | None:
        return storages.alias_of(storage)


@receiver(setting_changed)
def _reset_backends(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING, "DATABASES"):
        storages.reset()
        runner.reset()
    if setting == SETTING:
        apply_policies()
