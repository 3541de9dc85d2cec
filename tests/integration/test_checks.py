"""The ``hephaestus.*`` system checks, run the way a deployment runs them: ``manage.py check``.

Each misconfiguration must make ``check`` fail with the check's id, and the message carrying
that id must have a hint that helps fix it. Warnings do not fail ``check``; they fail it with
``--fail-level WARNING``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections
from django.test import modify_settings

import hephaestus_django
from hephaestus_django.storage import DjangoStorage

if TYPE_CHECKING:
    from pytest_django import Settings

DJANGO_STORAGE = "hephaestus_django.storage.DjangoStorage"
LOCAL_RUNNER = "hephaestus_django.runtime.LocalRunner"
STORAGES = "settings.HEPHAESTUS['STORAGES']"


class Exploding:
    """A would-be backend whose constructor fails in a way the checks cannot foresee."""

    def __init__(self, **options: Any) -> None:
        raise RuntimeError("the backend exploded")


EXPLODING = f"{__name__}.Exploding"


def storage(**options: Any) -> dict[str, Any]:
    return {"BACKEND": DJANGO_STORAGE, "OPTIONS": options}


def check_fails(fail_level: str = "ERROR") -> str:
    """Run ``manage.py check``; it must fail. Return its report."""
    with pytest.raises(SystemCheckError) as failure:
        call_command("check", fail_level=fail_level, stdout=StringIO(), stderr=StringIO())
    return str(failure.value)


def check_passes() -> None:
    call_command("check", stdout=StringIO(), stderr=StringIO())


def hephaestus_messages() -> list[CheckMessage]:
    return run_checks(tags=["hephaestus"])


def reported(check_id: str) -> CheckMessage:
    """The one message with ``check_id``, after ``check`` has failed reporting it."""
    report = check_fails("WARNING" if ".W" in check_id else "ERROR")
    assert f"({check_id})" in report
    found = [message for message in hephaestus_messages() if message.id == check_id]
    assert len(found) == 1, [str(message) for message in hephaestus_messages()]
    return found[0]


def ids() -> list[str | None]:
    return [message.id for message in hephaestus_messages()]


# --- happy paths ----------------------------------------------------------------------------


def test_no_setting_at_all_is_fine(settings: Settings) -> None:
    del settings.HEPHAESTUS

    assert hephaestus_messages() == []
    check_passes()


def test_a_full_valid_setting_is_fine(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "STORAGES": {"default": storage(using="default"), "tenant_a": storage(using="other")},
        "RUNNER": {"BACKEND": LOCAL_RUNNER, "OPTIONS": {"max_workers": 2}},
    }

    assert hephaestus_messages() == []
    check_passes()


# --- E001-E002: the shape of the setting ------------------------------------------------------


def test_e001_setting_is_not_a_dict(settings: Settings) -> None:
    settings.HEPHAESTUS = ["STORAGES"]

    message = reported("hephaestus.E001")

    assert "must be a dict, not list" in message.msg
    assert "'STORAGES'" in message.hint
    assert "'RUNNER'" in message.hint


def test_e002_unknown_top_level_key_suggests_the_close_one(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGE": {"default": storage()}}

    message = reported("hephaestus.E002")

    assert "'STORAGE'" in message.msg
    assert message.hint.startswith("Did you mean 'STORAGES'?")
    assert "STORAGES, RUNNER" in message.hint


def test_e002_unknown_key_far_from_any_gets_no_guess(settings: Settings) -> None:
    settings.HEPHAESTUS = {"QUEUE": "celery"}

    message = reported("hephaestus.E002")

    assert "Did you mean" not in message.hint
    assert "STORAGES, RUNNER" in message.hint


def test_e002_unknown_key_in_a_storage_entry(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "STORAGES": {"default": {"BACKEND": DJANGO_STORAGE, "OPTION": {"using": "default"}}}
    }

    message = reported("hephaestus.E002")

    assert message.obj == f"{STORAGES}['default']"
    assert message.hint.startswith("Did you mean 'OPTIONS'?")
    assert ids() == ["hephaestus.E002"]


def test_e002_unknown_key_in_the_runner_entry(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": {"BACKEND": LOCAL_RUNNER, "OPTION": {"max_workers": 2}}}

    message = reported("hephaestus.E002")

    assert message.obj == "settings.HEPHAESTUS['RUNNER']"
    assert message.hint.startswith("Did you mean 'OPTIONS'?")


# --- E003-E007: building each backend ---------------------------------------------------------


def test_e003_storages_is_not_a_dict(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": [storage()]}

    message = reported("hephaestus.E003")

    assert message.obj == STORAGES
    assert "must be a dict of alias" in message.msg
    assert "'BACKEND': 'hephaestus_django.storage.DjangoStorage'" in message.hint
    assert "docs/settings.md" in message.hint


def test_e003_storage_aliases_must_be_strings(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": {42: storage()}}

    message = reported("hephaestus.E003")

    assert "alias (a string)" in message.msg


def test_e003_a_storage_entry_is_not_a_dict(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"default": DJANGO_STORAGE}}

    message = reported("hephaestus.E003")

    assert message.obj == f"{STORAGES}['default']"
    assert "'BACKEND' and 'OPTIONS'" in message.msg
    assert repr(DJANGO_STORAGE) in message.msg
    assert "docs/settings.md" in message.hint


def test_e003_the_runner_entry_is_not_a_dict(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": LOCAL_RUNNER}

    message = reported("hephaestus.E003")

    assert message.obj == "settings.HEPHAESTUS['RUNNER']"
    assert "'BACKEND' and 'OPTIONS'" in message.msg


@pytest.mark.parametrize(
    ("setting", "where", "example"),
    [
        ({"STORAGES": {"default": {"OPTIONS": {}}}}, f"{STORAGES}['default']", DJANGO_STORAGE),
        (
            {"RUNNER": {"OPTIONS": {"max_workers": 2}}},
            "settings.HEPHAESTUS['RUNNER']",
            LOCAL_RUNNER,
        ),
    ],
    ids=["storage", "runner"],
)
def test_e004_missing_backend_hints_a_backend_of_its_kind(
    settings: Settings, setting: dict[str, Any], where: str, example: str
) -> None:
    settings.HEPHAESTUS = setting

    message = reported("hephaestus.E004")

    assert message.obj == where
    assert "no 'BACKEND'" in message.msg
    assert f"dotted path, e.g. {example!r}" in message.hint


@pytest.mark.parametrize(
    "backend", ["hephaestus_django.storage.DjangoStorag", "no_such_package.Storage", "nodots"]
)
def test_e005_backend_does_not_import(settings: Settings, backend: str) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"default": {"BACKEND": backend}}}

    message = reported("hephaestus.E005")

    assert repr(backend) in message.msg
    assert "could not be imported" in message.msg
    assert "dotted path" in message.hint


@pytest.mark.parametrize("backend", [3, None, "", DjangoStorage], ids=repr)
def test_e005_backend_that_is_not_a_dotted_path_string(settings: Settings, backend: Any) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"default": {"BACKEND": backend}}}

    message = reported("hephaestus.E005")

    assert "must be a dotted path string" in message.msg
    assert f"e.g. {DJANGO_STORAGE!r}" in message.hint


def test_e006_options_the_backend_does_not_take(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "STORAGES": {"default": {"BACKEND": DJANGO_STORAGE, "OPTIONS": {"usin": "default"}}}
    }

    message = reported("hephaestus.E006")

    assert message.obj == f"{STORAGES}['default']"
    assert "'usin'" in message.msg
    assert "Did you mean 'usin' -> 'using'?" in message.hint
    assert "The backend takes: using." in message.hint


def test_e007_a_backend_that_is_not_a_class(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"default": {"BACKEND": "os.path"}}}

    message = reported("hephaestus.E007")

    assert "'os.path' is not a class (it is a module)" in message.msg


def test_e006_options_the_backend_refuses(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": {"BACKEND": LOCAL_RUNNER, "OPTIONS": {"max_workers": 0}}}

    message = reported("hephaestus.E006")

    assert message.obj == "settings.HEPHAESTUS['RUNNER']"
    assert "max_workers must be a positive int" in message.msg


def test_e006_options_not_a_dict(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "STORAGES": {"default": {"BACKEND": DJANGO_STORAGE, "OPTIONS": ["default"]}}
    }

    message = reported("hephaestus.E006")

    assert "['OPTIONS'] must be a dict" in message.msg
    assert "docs/settings.md" in message.hint


def test_e006_a_constructor_that_raises_is_reported_not_raised(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"default": {"BACKEND": EXPLODING}}}

    message = reported("hephaestus.E006")

    assert message.obj == f"{STORAGES}['default']"
    assert "RuntimeError" in message.msg
    assert "the backend exploded" in message.msg


@pytest.mark.parametrize(
    ("setting", "kind"),
    [
        ({"STORAGES": {"default": {"BACKEND": "collections.OrderedDict"}}}, "storage"),
        ({"RUNNER": {"BACKEND": "collections.OrderedDict"}}, "runner"),
        ({"RUNNER": {"BACKEND": DJANGO_STORAGE}}, "runner"),
        ({"STORAGES": {"default": {"BACKEND": LOCAL_RUNNER}}}, "storage"),
    ],
    ids=["dict-as-storage", "dict-as-runner", "storage-as-runner", "runner-as-storage"],
)
def test_e007_backend_of_the_wrong_kind(
    settings: Settings, setting: dict[str, Any], kind: str
) -> None:
    settings.HEPHAESTUS = setting

    message = reported("hephaestus.E007")

    assert f"is not a {kind}" in message.msg
    verbs = "get, put, delete, query" if kind == "storage" else "start, resume, retry"
    assert verbs in message.hint


# --- E008-E010: the database ----------------------------------------------------------------


def test_e008_unknown_database_alias_suggests_the_close_one(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"default": storage(using="othr")}}

    message = reported("hephaestus.E008")

    assert "'othr'" in message.msg
    assert "'default'" in message.msg
    assert "'other'" in message.msg
    assert message.hint.startswith("Did you mean 'other'?")


@pytest.fixture
def lite_database() -> Iterator[str]:
    """A SQLite alias in ``DATABASES``, known to ``connections`` too, as if configured at start.

    ``connections`` reads ``settings.DATABASES`` once and keeps that very dict, so the alias is
    added to it (and removed again) rather than overriding the setting, which ``connections``
    would not notice.
    """
    alias = "lite"
    # configure_settings() fills in every key a connection reads; it insists on a 'default'.
    config = connections.configure_settings(
        {"default": {}, alias: {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    )[alias]
    with mock.patch.dict(connections.settings, {alias: config}):
        assert alias in django_settings.DATABASES
        try:
            yield alias
        finally:
            del connections[alias]


def test_e009_a_database_that_is_not_postgresql(
    settings: Settings, lite_database: str, django_db_blocker: Any
) -> None:
    settings.HEPHAESTUS = {
        "STORAGES": {"default": storage(using="default"), "sqlite": storage(using=lite_database)}
    }
    assert connections[lite_database].vendor == "sqlite"

    # Django 6.1's model checks visit every database, so `check` opens the in-memory SQLite one.
    with django_db_blocker.unblock():
        message = reported("hephaestus.E009")

    assert message.obj == f"{STORAGES}['sqlite']"
    assert "'django.db.backends.sqlite3'" in message.msg
    assert "'django.db.backends.postgresql'" in message.hint


def test_e010_contrib_postgres_not_installed() -> None:
    with warnings.catch_warnings():
        # Django warns that overriding INSTALLED_APPS has side effects; here they are the point.
        warnings.simplefilter("ignore")
        # procrastinate's app goes too: its ready(), which a changed INSTALLED_APPS runs again
        # for every app that stays, cannot run twice in one process (its tasks clash).
        removed = ["django.contrib.postgres", "procrastinate.contrib.django"]
        with modify_settings(INSTALLED_APPS={"remove": removed}):
            message = reported("hephaestus.E010")

    assert message.obj == "settings.INSTALLED_APPS"
    assert "Add 'django.contrib.postgres' to INSTALLED_APPS" in message.hint
    assert "GIN index" in message.hint
    assert "hephaestus.E010" not in ids()


# --- W001 -----------------------------------------------------------------------------------


def test_w001_no_default_storage_warns_without_failing_check(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": {"tenant_a": storage(using="other")}}

    check_passes()
    message = reported("hephaestus.W001")

    assert message.obj == STORAGES
    assert "storage=" in message.hint
    assert "'default'" in message.hint
    assert ids() == ["hephaestus.W001"]


def test_w001_an_empty_storages_dict_warns(settings: Settings) -> None:
    settings.HEPHAESTUS = {"STORAGES": {}}

    assert ids() == ["hephaestus.W001"]


# --- W004 -----------------------------------------------------------------------------------


def queued_runner(lease: float) -> dict[str, Any]:
    return {
        "BACKEND": "hephaestus_django.runtime.QueuedRunner",
        "OPTIONS": {
            "dispatcher": "hephaestus_django.runtime.memory_dispatch.InMemoryDispatcher",
            "lease": lease,
        },
    }


def test_w004_a_queued_runners_lease_over_ten_minutes_warns(settings: Settings) -> None:
    settings.HEPHAESTUS = {"RUNNER": queued_runner(lease=601)}

    check_passes()  # a warning only
    message = reported("hephaestus.W004")

    assert message.obj == "settings.HEPHAESTUS['RUNNER']"
    assert "lease of 10.0167 minutes" in message.msg
    assert "wait that long before the sweep enqueues them again" in message.msg
    assert "need not cover a long step" in message.hint
    assert ids() == ["hephaestus.W004"]


@pytest.mark.parametrize("lease", [60, 300, 600])
def test_w004_a_lease_of_ten_minutes_or_less_is_fine(settings: Settings, lease: float) -> None:
    settings.HEPHAESTUS = {"RUNNER": queued_runner(lease=lease)}

    assert ids() == []


def test_w004_is_not_for_a_local_runners_lease(settings: Settings) -> None:
    settings.HEPHAESTUS = {
        "RUNNER": {"BACKEND": "hephaestus_django.runtime.LocalRunner", "OPTIONS": {"lease": 3600}}
    }

    assert ids() == []


# --- a check never crashes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        None,
        42,
        {"STORAGES": 42},
        {"STORAGES": "x"},
        {"STORAGES": []},
        {"STORAGES": {"default": None}},
        {"STORAGES": {"default": {"BACKEND": 3}}},
        {"STORAGES": {"default": {"BACKEND": None, "OPTIONS": None}}},
        {"STORAGES": {"default": {"BACKEND": DJANGO_STORAGE, "OPTIONS": {1: 2}}}},
        {"STORAGES": {"default": storage(using=None)}},
        {"STORAGES": {"default": {"BACKEND": "os.path"}}},
        {"STORAGES": {"default": {"BACKEND": "hephaestus_django.conf.SETTING"}}},
        {"RUNNER": 42},
        {"RUNNER": {"BACKEND": LOCAL_RUNNER, "OPTIONS": {"max_workers": "2"}}},
        {42: 42, "RUNNER": []},
    ],
    ids=repr,
)
def test_check_never_crashes(settings: Settings, setting: Any) -> None:
    settings.HEPHAESTUS = setting

    messages = hephaestus_messages()
    report = check_fails()

    assert messages
    assert all(isinstance(message, CheckMessage) for message in messages)
    assert all(message.id and message.id.startswith("hephaestus.E") for message in messages)
    assert all(f"({message.id})" in report for message in messages)


# --- what a newcomer meets -------------------------------------------------------------------


def test_hints_point_to_the_settings_reference_installed_with_the_package(
    settings: Settings,
) -> None:
    settings.HEPHAESTUS = {"STORAGES": [storage()]}

    message = reported("hephaestus.E003")

    found = re.search(r"See (\S+) for every setting", message.hint)
    assert found, message.hint
    path = Path(found.group(1))
    assert path.is_absolute()
    assert path.is_file()
    assert path.read_text().startswith("# Settings reference")
    assert path.parent.parent == Path(hephaestus_django.__file__).resolve().parent


NO_SETTING_PROJECT = """
import django
from django.conf import settings
from django.core.checks import run_checks

settings.configure(
    INSTALLED_APPS=["django.contrib.postgres", "hephaestus_django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}},
)
django.setup()
for message in run_checks(tags=["hephaestus"]):
    print(message.id, message.obj, message.msg, "HINT:", message.hint, sep="|")
"""


def test_e009_without_a_setting_names_the_default_database(tmp_path: Path) -> None:
    """A fresh ``startproject`` (SQLite ``default``, no ``HEPHAESTUS``): the message names the
    database to change, not a storage setting the user never wrote."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(Path(hephaestus_django.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", NO_SETTING_PROJECT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    (line,) = result.stdout.splitlines()
    check_id, obj, msg, _, hint = line.split("|")
    assert check_id == "hephaestus.E009"
    assert obj == "settings.DATABASES['default']"
    assert "STORAGES" not in obj
    assert "settings.HEPHAESTUS['STORAGES'] is not set" in msg
    assert "'django.db.backends.sqlite3', which is not PostgreSQL" in msg
    assert "Point settings.DATABASES['default'] at a PostgreSQL" in hint
    assert "'django.db.backends.postgresql'" in hint
