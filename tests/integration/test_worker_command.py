"""``manage.py hephaestus_worker``: wiring only (the loop itself is tested with real processes)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from hephaestus_django import LocalRunner, Status
from hephaestus_django.storage import DjangoStorage
from tests import flows
from tests.timers import make_due

pytestmark = pytest.mark.django_db


def test_once_fires_the_due_timers() -> None:
    storage = DjangoStorage()
    timed = make_due(storage, LocalRunner().start(flows.Timed, {}, storage=storage).id)
    not_due = LocalRunner().start(flows.Timed, {}, storage=storage)  # due in five minutes
    out = StringIO()
    call_command("hephaestus_worker", "--once", stdout=out)
    assert out.getvalue() == "Moved 1 instance(s) on.\n"
    assert storage.get(timed.id).status is Status.COMPLETED
    assert storage.get(not_due.id).status is Status.WAITING
    assert storage.get(timed.id).waiting_steps == {}


@pytest.mark.parametrize("args", [["--batch-size", "0"], ["--interval", "0"], ["--interval", "-1"]])
def test_bad_arguments_are_refused(args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("hephaestus_worker", "--once", *args)


TWO_STORAGES = {
    "STORAGES": {
        "default": {"BACKEND": "hephaestus_django.storage.DjangoStorage"},
        "tenant_a": {
            "BACKEND": "hephaestus_django.storage.DjangoStorage",
            "OPTIONS": {"using": "other"},
        },
    }
}


def due_timer(storage: DjangoStorage) -> object:
    return make_due(storage, LocalRunner().start(flows.Timed, {}, storage=storage).id).id


@pytest.mark.django_db(databases=["default", "other"])
def test_one_worker_serves_every_storage_or_those_named(settings: Any) -> None:
    settings.HEPHAESTUS = TWO_STORAGES
    default, tenant = DjangoStorage(), DjangoStorage(using="other")
    first, second = due_timer(default), due_timer(tenant)

    out = StringIO()
    call_command("hephaestus_worker", "--once", "--storage", "tenant_a", stdout=out)
    assert out.getvalue() == "Moved 1 instance(s) on.\n"
    assert tenant.get(second).status is Status.COMPLETED
    assert default.get(first).status is Status.WAITING

    third = due_timer(tenant)
    call_command("hephaestus_worker", "--once", stdout=out)  # every configured storage
    assert default.get(first).status is Status.COMPLETED
    assert tenant.get(third).status is Status.COMPLETED


def test_an_unknown_storage_is_refused_with_the_configured_ones() -> None:
    with pytest.raises(CommandError, match=r"no storage named 'nope' .*configured: 'default'"):
        call_command("hephaestus_worker", "--once", "--storage", "nope")


def test_max_backoff_below_the_interval_is_refused() -> None:
    with pytest.raises(CommandError, match="--max-backoff must be at least --interval"):
        call_command("hephaestus_worker", "--once", "--interval", "5", "--max-backoff", "1")


def test_a_long_interval_raises_the_default_backoff_with_it() -> None:
    out = StringIO()
    call_command("hephaestus_worker", "--once", "--interval", "30", stdout=out)
    assert out.getvalue() == "Moved 0 instance(s) on.\n"


@contextmanager
def unconfigured_logging() -> Iterator[logging.Logger]:
    """Our logger without handlers, and no handler above it (pytest's own put aside for the
    block: they are attached to the root logger while a test runs)."""
    root, ours = logging.getLogger(), logging.getLogger("hephaestus_django")
    saved = (root.handlers, ours.handlers, ours.level)
    root.handlers, ours.handlers = [], []
    try:
        yield ours
    finally:
        root.handlers, ours.handlers = saved[0], saved[1]
        ours.setLevel(saved[2])


def test_the_worker_logs_to_stderr_when_the_project_configured_nothing(settings: Any) -> None:
    settings.LOGGING = {"version": 1, "loggers": {"django": {"level": "INFO"}}}
    with unconfigured_logging() as ours:
        ours.setLevel(logging.NOTSET)
        call_command("hephaestus_worker", "--once", stdout=StringIO())
        [handler] = ours.handlers
        assert isinstance(handler, logging.StreamHandler)
        assert ours.level == logging.INFO


@pytest.mark.parametrize(
    "loggers",
    [
        {"hephaestus_django": {"level": "WARNING"}},
        {"hephaestus_django.worker": {"level": "ERROR", "propagate": False}},
        {"": {"level": "INFO"}},
    ],
)
def test_the_worker_keeps_the_logging_the_project_configured(
    settings: Any, loggers: dict[str, Any]
) -> None:
    settings.LOGGING = {"version": 1, "loggers": loggers}
    with unconfigured_logging() as ours:
        ours.setLevel(logging.WARNING)
        call_command("hephaestus_worker", "--once", stdout=StringIO())
        assert ours.handlers == []
        assert ours.level == logging.WARNING
