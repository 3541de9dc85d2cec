"""System checks for ``settings.HEPHAESTUS`` and the database it stores in.

Run by ``manage.py check`` (and before ``migrate``/``runserver``), so a
misconfiguration is reported with an id and a hint at deploy time, not at the
first request. A check never raises: whatever is wrong becomes a message.

=========================  ===============================================================
``hephaestus.E001``        ``HEPHAESTUS`` is not a dict
``hephaestus.E002``        an unknown key in ``HEPHAESTUS`` or in a backend entry
``hephaestus.E003``        ``STORAGES`` is not a dict of entries, or an entry is not a dict
``hephaestus.E004``        a backend entry has no ``BACKEND``
``hephaestus.E005``        a ``BACKEND`` cannot be imported
``hephaestus.E006``        the ``OPTIONS`` do not suit the backend
``hephaestus.E007``        the backend is not a storage (or runner)
``hephaestus.E008``        a ``DjangoStorage`` names a database alias that does not exist
``hephaestus.E009``        a ``DjangoStorage`` database is not PostgreSQL
``hephaestus.E010``        ``django.contrib.postgres`` is not in ``INSTALLED_APPS``
``hephaestus.E011``        the queue adapter's job engine is not installed (the hint names the
                           extra to ``pip install``)
``hephaestus.E012``        the engine's Django app is not in ``INSTALLED_APPS``
``hephaestus.E013``        Django Tasks: the dispatcher's task backend is not an alias of
                           ``TASKS``, or cannot be built
``hephaestus.E014``        Django Tasks: the backend refuses the dispatcher's queue name or
                           priority
``hephaestus.E015``        ``TELEMETRY`` is not True or False
``hephaestus.E016``        ``MAX_STATE_BYTES`` is not a positive int or None
``hephaestus.E017``        ``DEFAULT_RETRY`` is not a sound ``Retry``, a dict of its arguments,
                          or None
``hephaestus.E030``        ``SCHEDULES`` is not a dict of name -> dict, or an entry has an
                           unknown key or lacks ``WORKFLOW`` or ``CRON``
``hephaestus.E031``        a schedule's ``CRON`` is not a valid cron expression
``hephaestus.E032``        a schedule's ``TIMEZONE`` is not a known time zone
``hephaestus.E033``        a schedule's ``WORKFLOW`` is not a registered workflow
``hephaestus.E034``        a schedule's ``CONTEXT`` cannot be stored
``hephaestus.E035``        a schedule's ``KEY`` template does not make a business key
``hephaestus.E036``        a schedule's ``MISSED`` or ``CATCH_UP_LIMIT`` is not allowed
``hephaestus.E037``        a schedule's ``STORAGE`` is not a configured storage that keeps
                           schedules
``hephaestus.W001``        no storage is named ``"default"`` (``Workflow.start()`` uses it)
``hephaestus.W002``        enqueueing does not join a storage's transaction: the storage is on
                           another database alias than the queue's jobs (for Django Tasks,
                           also: the backend is not a database backend)
``hephaestus.W003``        Django Tasks: the backend cannot delay a task (``run_after``), so
                           timers wait for the sweep
``hephaestus.W004``        a ``QueuedRunner``'s ``lease`` is longer than 10 minutes
=========================  ===============================================================

E011, E012 and W002 concern ``QueuedRunner`` with any adapter of
:mod:`hephaestus_django.queues`: the adapter declares what it needs (its ``requirements``)
and where its jobs go (``database_alias()``, ``joins_transaction()``), and the checks hold the
project to it. Once those pass, an adapter with a ``check(storages)`` method reports on its
engine's own settings (E013, E014, W003 for ``TasksDispatcher``).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import connections

from hephaestus_django.conf import (
    BACKEND_KEYS,
    DEFAULT_RUNNER_BACKEND,
    DEFAULT_STORAGE_BACKEND,
    DOCS,
    SETTING,
    TOP_LEVEL_KEYS,
    InvalidBackendError,
    InvalidScheduleError,
    build_backend,
    default_retry,
    hephaestus_setting,
    max_state_bytes,
    runner_settings,
    schedule_settings,
    storage_settings,
)
from hephaestus_django.runtime.contract import ScheduleTable
from hephaestus_django.runtime.schedules import schedule_problems

TAG = "hephaestus"


def _error(number: int, msg: str, hint: str, obj: str) -> Error:
    return Error(msg, hint=hint, obj=obj, id=f"hephaestus.E{number:03d}")


def _reported(error: InvalidBackendError, where: str) -> Error:
    """A refusal from :mod:`hephaestus_django.conf`, as the check message it stands for."""
    return Error(str(error), hint=error.hint, obj=where, id=error.check_id)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"Did you mean {close[0]!r}? " if close else ""


def _unknown_keys(given: Mapping[Any, Any], known: tuple[str, ...], where: str) -> list[Error]:
    return [
        _error(
            2,
            f"{where} has an unknown key {key!r}.",
            f"{_did_you_mean(str(key), known)}The keys are {', '.join(known)}. {DOCS}",
            where,
        )
        for key in given
        if key not in known
    ]


@register(TAG)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check ``settings.HEPHAESTUS`` and every backend it names."""
    try:
        raw = hephaestus_setting()
    except InvalidBackendError as error:
        return [_reported(error, f"settings.{SETTING}")]
    messages: list[CheckMessage] = list(_unknown_keys(raw, TOP_LEVEL_KEYS, f"settings.{SETTING}"))
    messages += _check_storages()
    telemetry = raw.get("TELEMETRY", True)
    if not isinstance(telemetry, bool):
        messages.append(
            _error(
                15,
                f"settings.{SETTING}['TELEMETRY'] must be True or False, not {telemetry!r}.",
                f"True traces and measures with OpenTelemetry when opentelemetry-api is "
                f"installed; False never does. {DOCS}",
                f"settings.{SETTING}['TELEMETRY']",
            )
        )
    for read in (max_state_bytes, default_retry):
        try:
            read()
        except InvalidBackendError as error:
            messages.append(_reported(error, f"settings.{SETTING}"))
    runner = raw.get("RUNNER")
    found, built = _check_backend(
        runner_settings() if runner is None else runner,
        f"settings.{SETTING}['RUNNER']",
        "runner",
        ("start", "resume", "retry", "work"),
        DEFAULT_RUNNER_BACKEND,
    )
    messages += found
    if built is not None:
        messages += _check_lease(built)
        messages += _check_queue(built)
    return messages


@register(TAG)
def check_postgres_app(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The GIN index on ``state`` needs ``django.contrib.postgres`` (Django 6 enforces it)."""
    if apps.is_installed("django.contrib.postgres"):
        return []
    return [
        _error(
            10,
            "'django.contrib.postgres' is not in INSTALLED_APPS.",
            "Add 'django.contrib.postgres' to INSTALLED_APPS: the workflow_instances table has "
            "a GIN index on its JSONB state, and containment queries (state__contains) need it.",
            "settings.INSTALLED_APPS",
        )
    ]


def _check_storages() -> list[CheckMessage]:
    where = f"settings.{SETTING}['STORAGES']"
    try:
        entries = storage_settings()
    except InvalidBackendError as error:
        return [_reported(error, where)]
    # With no STORAGES of their own, users never wrote the entry: name the database instead.
    implicit = hephaestus_setting().get("STORAGES") is None
    messages: list[CheckMessage] = []
    for alias, entry in entries.items():
        entry_where = f"{where}[{alias!r}]"
        found, storage = _check_backend(
            entry,
            entry_where,
            "storage",
            ("get", "put", "delete", "query"),
            DEFAULT_STORAGE_BACKEND,
        )
        messages += found
        if storage is not None:
            messages += _check_database(storage, entry_where, implicit=implicit)
    if "default" not in entries:
        messages.append(
            Warning(
                f"{where} has no 'default' storage.",
                hint="Workflow.start(), resume(), get() and list() use storage='default' unless "
                "told otherwise; name one storage 'default' or always pass storage=.",
                obj=where,
                id="hephaestus.W001",
            )
        )
    return messages


SCHEDULE_CHECKS = {
    "cron": 31,
    "timezone": 32,
    "workflow": 33,
    "context": 34,
    "key": 35,
    "missed": 36,
}
"""Each kind of :func:`~hephaestus_django.runtime.schedules.schedule_problems`, and its check."""


@register(TAG)
def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every schedule of ``HEPHAESTUS["SCHEDULES"]``: its shape, expression, time zone,
    workflow, context, key template, missed-ticks policy and storage (E030-E037). A worker
    leaves out a schedule with any of them, and ``hephaestus_worker`` does not start."""
    where = f"settings.{SETTING}['SCHEDULES']"
    try:
        entries = storage_settings()
        schedules = schedule_settings()
    except InvalidScheduleError as error:
        return [_reported(error, where)]
    except InvalidBackendError:  # the setting itself, or STORAGES: check_settings reports it
        return []
    messages: list[CheckMessage] = []
    built = _built_storages()
    for name, schedule in schedules.items():
        here = f"{where}[{name!r}]"
        for kind, message, hint in schedule_problems(schedule):
            messages.append(_error(SCHEDULE_CHECKS[kind], message, f"{hint} {DOCS}", here))
        alias = schedule.storage
        if not isinstance(alias, str) or alias not in entries:
            known = ", ".join(map(repr, entries))
            messages.append(
                _error(
                    37,
                    f"schedule {name!r}: STORAGE {alias!r} is not a configured storage.",
                    f"{_did_you_mean(str(alias), entries)}Configured: {known}. {DOCS}",
                    here,
                )
            )
        elif alias in built and not isinstance(built[alias], ScheduleTable):
            messages.append(
                _error(
                    37,
                    f"schedule {name!r}: storage {alias!r} ({type(built[alias]).__name__}) "
                    "keeps no schedules' state.",
                    f"Use a DjangoStorage (or InMemoryStorage in tests). {DOCS}",
                    here,
                )
            )
    return messages


LEASE_LIMIT = timedelta(minutes=10)
"""Above this, W004: a killed worker's steps wait that long before the sweep enqueues them."""


def _check_lease(runner: Any) -> list[CheckMessage]:
    """W004 for a ``QueuedRunner`` whose lease is longer than :data:`LEASE_LIMIT`."""
    from hephaestus_django.runtime import QueuedRunner

    if not isinstance(runner, QueuedRunner) or runner.lease <= LEASE_LIMIT:
        return []
    where = f"settings.{SETTING}['RUNNER']"
    minutes = runner.lease.total_seconds() / 60
    return [
        Warning(
            f"{where} has a lease of {minutes:g} minutes: the steps of a worker that dies "
            f"(killed, out of memory, its machine gone) wait that long before the sweep "
            f"enqueues them again.",
            hint="A running step renews its instance's lease, so the lease need not cover a "
            "long step: it bounds how long a dead worker's work waits. Keep it at a few "
            "minutes (the default is 5); OPTIONS={'lease': <seconds>}.",
            obj=where,
            id="hephaestus.W004",
        )
    ]


def _check_queue(runner: Any) -> list[CheckMessage]:
    """E011/E012/W002 for a runner whose dispatcher is one of ``hephaestus_django.queues``,
    then what the dispatcher's own ``check(storages)`` reports (E013, E014, W003)."""
    from hephaestus_django.postgres.storage import DjangoStorage
    from hephaestus_django.queues import Requirements

    dispatcher: Any = getattr(runner, "dispatcher", None)
    needs = getattr(dispatcher, "requirements", None)
    if not isinstance(needs, Requirements):
        return []
    where = f"settings.{SETTING}['RUNNER']"
    try:
        importlib.import_module(needs.module)
    except ImportError as error:
        return [
            _error(
                11,
                f"{where} enqueues with {dispatcher!r}, but {needs.engine} is not installed "
                f"({error}).",
                f"pip install 'hephaestus-django[{needs.extra}]'",
                where,
            )
        ]
    if needs.app is not None and not apps.is_installed(needs.app):
        return [
            _error(
                12,
                f"{where} enqueues with {dispatcher!r}, but {needs.app!r} is not in "
                f"INSTALLED_APPS.",
                f"Add {needs.app!r} to INSTALLED_APPS and run manage.py migrate: it brings "
                f"{needs.engine}'s tables and the workers that run the jobs.",
                "settings.INSTALLED_APPS",
            )
        ]
    storages = _built_storages()
    own_check = getattr(dispatcher, "check", None)
    messages: list[CheckMessage] = list(own_check(storages)) if callable(own_check) else []
    if any(message.is_serious() for message in messages):
        return messages  # the engine is misconfigured: where its jobs go is not known yet
    queue_alias = dispatcher.database_alias()
    for alias, storage in storages.items():
        if not isinstance(storage, DjangoStorage) or dispatcher.joins_transaction(storage):
            continue
        storage_where = f"settings.{SETTING}['STORAGES'][{alias!r}]"
        where_jobs = (
            f"keeps its jobs in database {queue_alias!r}"
            if queue_alias is not None
            else f"keeps its jobs outside the database ({dispatcher!r} is not on a database "
            f"backend)"
        )
        messages.append(
            Warning(
                f"{storage_where} stores in database {storage.using!r}, but {needs.engine} "
                f"{where_jobs}: the jobs of a transition are enqueued after it commits, not "
                f"in its transaction.",
                hint=f"Keep the storage and {needs.engine}'s jobs on one database alias"
                + (
                    ""
                    if queue_alias is not None
                    else " (for Django Tasks: django_tasks_db.DatabaseBackend)"
                )
                + ". Otherwise a process that dies between the commit and the enqueue leaves "
                "its steps to the sweep (manage.py hephaestus_worker), one lease later.",
                obj=storage_where,
                id="hephaestus.W002",
            )
        )
    return messages


def _built_storages() -> dict[str, Any]:
    """The configured storages that can be built, by alias (the others have errors already)."""
    try:
        entries = storage_settings()
    except InvalidBackendError:
        return {}
    built = {}
    for alias, entry in entries.items():
        try:
            built[alias] = build_backend(entry, alias, InvalidBackendError)
        except Exception:  # reported by _check_storages
            continue
    return built


def _check_backend(
    entry: object, where: str, kind: str, verbs: tuple[str, ...], example: str
) -> tuple[list[CheckMessage], Any]:
    """Messages for one backend entry, and the backend when it could be built."""
    messages: list[CheckMessage] = []
    if isinstance(entry, Mapping):
        messages += _unknown_keys(entry, BACKEND_KEYS, where)
    try:
        backend = build_backend(entry, where, InvalidBackendError, example)
    except InvalidBackendError as error:
        return [*messages, _reported(error, where)], None
    except Exception as error:  # a backend's own __init__ failed: report it, never crash
        return [*messages, _error(6, f"{where}: building it raised {error!r}.", DOCS, where)], None
    missing = [verb for verb in verbs if not callable(getattr(backend, verb, None))]
    if missing:
        messages.append(
            _error(
                7,
                f"{where}['BACKEND'] {backend!r} is not a {kind}: it has no {', '.join(missing)}.",
                f"A {kind} backend implements {', '.join(verbs)}. {DOCS}",
                where,
            )
        )
        return messages, None
    return messages, backend


def _check_database(storage: Any, where: str, *, implicit: bool = False) -> list[CheckMessage]:
    """E008/E009 for a ``DjangoStorage``'s database alias.

    ``implicit``: the storage is the one used when ``HEPHAESTUS['STORAGES']`` is not set, so
    the messages speak of ``DATABASES['default']``, which the user did write, and not of a
    storage entry they never saw.
    """
    from hephaestus_django.postgres.storage import DjangoStorage

    if not isinstance(storage, DjangoStorage):
        return []
    alias = storage.using
    if implicit:
        return _check_default_database(alias)
    if alias not in settings.DATABASES:
        known = ", ".join(repr(name) for name in settings.DATABASES) or "none"
        return [
            _error(
                8,
                f"{where} stores in database {alias!r}, which is not in settings.DATABASES "
                f"(databases: {known}).",
                f"{_did_you_mean(alias, settings.DATABASES)}Set OPTIONS={{'using': <alias>}} "
                f"to one of settings.DATABASES.",
                where,
            )
        ]
    try:
        vendor = connections[alias].vendor
    except Exception as error:  # the engine itself does not load (a missing driver, say)
        return [
            _error(
                9,
                f"{where} stores in database {alias!r}, whose engine "
                f"{settings.DATABASES[alias].get('ENGINE', '?')!r} does not load: {error}",
                "Install the database driver (pip install 'psycopg[binary]') and check ENGINE.",
                where,
            )
        ]
    if vendor != "postgresql":
        engine = settings.DATABASES[alias].get("ENGINE", "?")
        return [
            _error(
                9,
                f"{where} stores in database {alias!r}, whose engine {engine!r} is not PostgreSQL.",
                "hephaestus-django stores instances as JSONB with a GIN index and needs "
                "PostgreSQL 14+ ('django.db.backends.postgresql').",
                where,
            )
        ]
    return []


def _check_default_database(alias: str) -> list[CheckMessage]:
    """E009 for the database used without a ``HEPHAESTUS['STORAGES']`` setting.

    A fresh ``startproject`` has a SQLite ``default``: what must change is that database (or
    the storage setting), and the message says so in those words.
    """
    where = f"settings.DATABASES[{alias!r}]"
    engine = settings.DATABASES.get(alias, {}).get("ENGINE", "?")
    try:
        engine = connections[alias].settings_dict.get("ENGINE", engine)
        vendor = connections[alias].vendor
        problem = f"uses {engine!r}, which is not PostgreSQL" if vendor != "postgresql" else ""
    except Exception as error:  # the engine itself does not load (a missing driver, say)
        problem = f"uses {engine!r}, which does not load: {error}"
    if not problem:
        return []
    return [
        _error(
            9,
            f"hephaestus-django stores workflow instances in the {alias!r} database, since "
            f"settings.{SETTING}['STORAGES'] is not set, and {where} {problem}.",
            f"Point {where} at a PostgreSQL 14+ database: ENGINE "
            f"'django.db.backends.postgresql' with its NAME, USER, PASSWORD, HOST and PORT "
            f"(and pip install 'psycopg[binary]'). To store them in another PostgreSQL "
            f"database, set settings.{SETTING}['STORAGES']. {DOCS}",
            where,
        )
    ]
