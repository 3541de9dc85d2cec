"""Settings of the Django Tasks worker processes (``db_worker``, ``hephaestus_worker``).

The database is the test's, passed as ``$HEPHAESTUS_TEST_DB`` (a JSON object of Django
database settings); ``$LEASE`` is the queued runner's lease in seconds. ``tests.dispatchers`` is
an installed app so that app loading imports its ``workflows`` module, as in a project.
"""

from __future__ import annotations

import json
import os

DATABASES = {"default": json.loads(os.environ["HEPHAESTUS_TEST_DB"])}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.postgres",
    "django_tasks_db",
    "hephaestus_django",
    "tests.dispatchers",
]
USE_TZ = True
SECRET_KEY = "hephaestus-django-tests-not-secret"
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
HEPHAESTUS = {
    "RUNNER": {
        "BACKEND": "hephaestus_django.runtime.QueuedRunner",
        "OPTIONS": {
            "dispatcher": "hephaestus_django.queues.tasks.TasksDispatcher",
            "lease": float(os.environ.get("LEASE", "300")),
        },
    }
}
