"""Settings of the worker processes (``manage.py procrastinate worker``, ``manage.py db_worker``,
the sweep), as ``tests.dispatchers.workers`` starts them.

The database is the test's, from ``$HEPHAESTUS_TEST_DB`` (see ``tests/processes/children.py``);
the runner is ``QueuedRunner`` on the dispatcher ``$DISPATCHER`` (a dotted path) with the lease
``$LEASE`` (seconds). Both engines' apps are installed, as in the tests' own settings.
``tests.dispatchers`` is an app so that its ``workflows`` module is autodiscovered.
"""

from __future__ import annotations

import json
import os

DATABASES = {
    "default": {
        **json.loads(os.environ["HEPHAESTUS_TEST_DB"]),
        # as the README advises for workers: no new connection per job
        "CONN_MAX_AGE": 300,
        "CONN_HEALTH_CHECKS": True,
    }
}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.postgres",
    "procrastinate.contrib.django",
    "django_tasks_db",
    "hephaestus_django",
    "tests.dispatchers",
]
USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "hephaestus-django-tests-not-secret"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
HEPHAESTUS = {
    "RUNNER": {
        "BACKEND": "hephaestus_django.runtime.QueuedRunner",
        "OPTIONS": {
            "dispatcher": os.environ.get(
                "DISPATCHER", "hephaestus_django.queues.procrastinate.ProcrastinateDispatcher"
            ),
            "lease": float(os.environ.get("LEASE", "300")),
        },
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "hephaestus_django": {"handlers": ["stderr"], "level": "INFO"},
        "procrastinate": {"handlers": ["stderr"], "level": "WARNING"},
        "django_tasks": {"handlers": ["stderr"], "level": "WARNING"},
        "django_tasks_db": {"handlers": ["stderr"], "level": "WARNING"},
    },
}
