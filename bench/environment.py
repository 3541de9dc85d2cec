"""Where the benchmark runs: a dedicated database, Django configured standalone, the machine.

The server is the one ``$DATABASE_URL`` names, or else an embedded PostgreSQL kept in
``.pgdata/bench`` (started here and stopped when the process exits). On that server the database
``hephaestus_bench`` is dropped and created afresh, migrated, and used by both sides: Django's
connection (``DjangoStorage``, the ORM, the admin) and a raw psycopg connection (the baseline).

Django turns psycopg's prepared statements off by default (they break transaction-pooling
connection poolers) and binds parameters on the client; plain psycopg prepares a statement from
its fifth execution on. So where it matters ``DjangoStorage`` is measured three ways: on the
``default`` alias (Django's defaults) against plain psycopg; on the ``prepared`` alias, the same
database with ``OPTIONS = {"server_side_binding": True, "prepare_threshold": 5}`` (Django's
backend passes ``prepare_threshold`` from OPTIONS to psycopg and otherwise sets it to None),
against plain psycopg; and on the ``default`` alias against psycopg with prepared statements off
too (``prepare_threshold=None``), where both sides make the server plan every statement and the
ratio is what hephaestus-django and Django's cursor cost.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO = Path(__file__).resolve().parent.parent
EMBEDDED_DIR = REPO / ".pgdata" / "bench"
DATABASE = os.environ.get("BENCH_DATABASE", "").strip() or "hephaestus_bench"
"""The database the bench drops and creates (`$BENCH_DATABASE`, else hephaestus_bench)."""
PREPARED = "prepared"
"""A second alias on the same database, with psycopg's prepared statements switched back on."""
PREPARED_OPTIONS = {"server_side_binding": True, "prepare_threshold": 5}


def _queued_apps() -> list[str]:
    """procrastinate's app (its tables) and the queued runner's workflows and bare tasks, where
    procrastinate is installed (the ``procrastinate`` extra; the dev extras bring it)."""
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        return []
    return ["procrastinate.contrib.django", "bench.queued"]


QUEUED_APPS = _queued_apps()
"""Empty where procrastinate is missing: the queued-runner section is then skipped."""


def server_url() -> tuple[str, str]:
    """The server's URL, and where it came from (``DATABASE_URL`` or ``embedded``)."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url, "DATABASE_URL"
    from hephaestus_django.testing.embedded import ensure_server

    return ensure_server(EMBEDDED_DIR, database=DATABASE, stop_at_exit=True), "embedded"


def recreate_database(url: str, name: str = DATABASE) -> str:
    """Drop and create the database ``name`` (:data:`DATABASE` unless told) on the server of
    ``url``; return its conninfo."""
    params = conninfo_to_dict(url)
    maintenance = params.get("dbname") or "postgres"
    if maintenance == name:
        maintenance = "postgres"
    with psycopg.connect(make_conninfo(url, dbname=maintenance), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(url, dbname=name)


def configure_django(conninfo: str) -> None:
    """``settings.configure(...)`` for the bench database, ``django.setup()``, ``migrate``."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    params: dict[str, Any] = conninfo_to_dict(conninfo)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params["dbname"],
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
        "CONN_MAX_AGE": None,
    }
    settings.configure(
        DEBUG=False,
        SECRET_KEY="hephaestus-django-bench-not-secret",
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DATABASES={"default": database, PREPARED: {**database, "OPTIONS": PREPARED_OPTIONS}},
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.postgres",
            "hephaestus_django",
            *QUEUED_APPS,
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF="bench.urls",
        STATIC_URL="static/",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    django.setup()
    import bench.workflows  # noqa: F401  (registers the measured workflows)

    call_command("migrate", verbosity=0, interactive=False)


def raw_connection(conninfo: str, *, prepared: bool = True) -> psycopg.Connection[Any]:
    """The baseline's connection: psycopg 3 defaults, autocommit like Django's.

    ``prepared=False`` turns psycopg's prepared statements off, as Django's defaults do.
    """
    if prepared:
        return psycopg.connect(conninfo, autocommit=True)
    return psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)


def machine(raw: psycopg.Connection[Any], source: str) -> dict[str, Any]:
    """What the figures were measured on."""

    def show(name: str) -> str:
        row = raw.execute(f"SHOW {name}").fetchone()
        return str(row[0]) if row else "?"

    server = raw.execute("SELECT version()").fetchone()
    return {
        "cpus": os.cpu_count(),
        "load_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "django": version("django"),
        "psycopg": version("psycopg"),
        "psycopg_impl": psycopg.pq.__impl__,
        "postgresql": server[0] if server else "?",
        "server": source,
        "server_settings": {
            name: show(name)
            for name in (
                "shared_buffers",
                "fsync",
                "synchronous_commit",
                "autovacuum",
                "gin_pending_list_limit",
                "max_parallel_workers_per_gather",
            )
        },
    }
