"""Settings of the bench's worker processes (``python -m django procrastinate worker``,
``python -m django hephaestus_worker``) and of its counting process.

The database comes from ``$BENCH_QUEUED_DB`` (the JSON of the bench's ``DATABASES['default']``,
persistent connections as in the bench's own process); the runner is ``QueuedRunner`` on
``ProcrastinateDispatcher`` with the queue ``$BENCH_QUEUED_QUEUE`` and the lease
``$BENCH_QUEUED_LEASE`` (seconds).
"""

from __future__ import annotations

import json
import os

DATABASES = {"default": json.loads(os.environ["BENCH_QUEUED_DB"])}
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.postgres",
    "procrastinate.contrib.django",
    "hephaestus_django",
    "bench.queued",
]
USE_TZ = True
TIME_ZONE = "UTC"
DEBUG = False
SECRET_KEY = "hephaestus-django-bench-not-secret"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
QUEUE = os.environ.get("BENCH_QUEUED_QUEUE", "hephaestus-bench")
HEPHAESTUS = {
    "RUNNER": {
        "BACKEND": "hephaestus_django.runtime.QueuedRunner",
        "OPTIONS": {
            "dispatcher": "hephaestus_django.queues.procrastinate.ProcrastinateDispatcher",
            "dispatcher_options": {"queue": QUEUE},
            "lease": float(os.environ.get("BENCH_QUEUED_LEASE", "60")),
        },
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"}
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "hephaestus_django": {"handlers": ["stderr"], "level": "WARNING"},
        "procrastinate": {"handlers": ["stderr"], "level": "WARNING"},
    },
}
