"""Django settings for the hephaestus-django test-suite.

The suite runs against a real PostgreSQL server: the one ``$DATABASE_URL`` names, or else an
embedded server in ``<repo>/.pgdata/tests`` that this module starts (see
``hephaestus_django.testing.embedded``). Starting it costs about 0.1 s when the cluster exists
(under a second the very first time) and stopping it as much, so it is stopped again when the
test process exits, if this process started it: no server is left behind after ``make test``.

Two aliases point at the same server but at different databases, so that storages bound to
different aliases can be tested; pytest-django creates a test database for each.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

REPO_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = REPO_DIR / ".pgdata" / "tests"


def _databases() -> dict[str, dict[str, Any]]:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        default = dict(dj_database_url.parse(url))
        other = {**default, "NAME": f"{default['NAME']}_other"}
    else:
        from hephaestus_django.testing.embedded import ensure_server

        default = dict(dj_database_url.parse(ensure_server(EMBEDDED_DATA_DIR, stop_at_exit=True)))
        other_url = ensure_server(EMBEDDED_DATA_DIR, database="hephaestus_other")
        other = dict(dj_database_url.parse(other_url))
    default["TEST"] = {"NAME": f"test_{default['NAME']}"}
    other["TEST"] = {"NAME": f"test_{other['NAME']}"}
    return {"default": default, "other": other}


DATABASES = _databases()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "procrastinate.contrib.django",
    "django_tasks_db",  # Django Tasks' database backend (tests/dispatchers)
    "hephaestus_django",
    "tests.testapp",
]

# Django Tasks: the database backend, on the database the default storage uses, so enqueueing
# joins the transaction of a QueuedRunner with TasksDispatcher (tests/dispatchers).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

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

SECRET_KEY = "hephaestus-django-tests-not-secret"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Creating users in tests should not spend time on a slow password hash.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

ROOT_URLCONF = "tests.urls"
