"""Adapters that run ``QueuedRunner``'s jobs on an existing job engine's workers.

Each module here implements the :class:`~hephaestus_django.runtime.dispatch.Dispatcher`
protocol on one engine, and each engine is an optional extra of the package, so a project
that uses none of them installs none of them:

- :mod:`hephaestus_django.queues.procrastinate`: ``ProcrastinateDispatcher``, on
  procrastinate's Django integration (``pip install 'hephaestus-django[procrastinate]'``);
  its workers are ``manage.py procrastinate worker``.
- :mod:`hephaestus_django.queues.tasks`: ``TasksDispatcher``, on Django's Tasks API
  (``django.tasks`` on Django 6, the ``django-tasks`` backport on Django 5.2;
  ``pip install 'hephaestus-django[tasks]'``); with django-tasks-db's database backend its
  workers are ``manage.py db_worker``.

Select one in settings::

    HEPHAESTUS = {
        "RUNNER": {
            "BACKEND": "hephaestus_django.runtime.QueuedRunner",
            "OPTIONS": {
                "dispatcher": "hephaestus_django.queues.procrastinate.ProcrastinateDispatcher",
                "dispatcher_options": {"queue": "hephaestus"},
            },
        },
    }

Importing an adapter module never imports its engine: the engine is imported when the
adapter first enqueues. So a project without the engine installed still builds the runner,
and ``manage.py check`` says what is missing (``hephaestus.E011``/``E012``) rather than
failing to import. An adapter tells the checks what it needs through its
:class:`Requirements`, where its jobs go through ``database_alias()`` and
``joins_transaction()``, and may report on its engine's own settings with a
``check(storages)`` method; see :mod:`hephaestus_django.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a queue adapter needs in a project, as the system checks verify it."""

    engine: str
    """The engine's name, as messages call it (``"procrastinate"``)."""
    module: str
    """A module that imports when the engine is installed."""
    extra: str
    """The extra that installs it: ``pip install 'hephaestus-django[<extra>]'``."""
    app: str | None
    """The engine's Django app, which must be in ``INSTALLED_APPS`` (None: it needs none)."""
