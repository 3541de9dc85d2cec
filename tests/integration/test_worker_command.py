"""``manage.py hephaestus_worker``: wiring only (the loop itself is tested with real processes)."""

from __future__ import annotations

from io import StringIO

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
