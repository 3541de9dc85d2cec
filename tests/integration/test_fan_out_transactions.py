"""The rule for ``transaction.atomic()``: every step of a run sees the caller's uncommitted rows,
fan-out branches included.

Outside a transaction, a fan-out's branches run concurrently on the runner's pool, each thread
with its own connection. Inside the caller's ``transaction.atomic()``, those connections would
not see what the caller has written but not committed yet (while a step outside a fan-out, run
in the caller's thread, does), so there the branches run in the caller's thread, one after
another. These tests commit for real (``transaction=True``): the outer test is not wrapped in a
transaction of its own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connections, transaction

from hephaestus_django import Done, Event, Step, Workflow
from hephaestus_django.runtime import LocalRunner
from hephaestus_django.storage import DjangoStorage

pytestmark = pytest.mark.django_db(transaction=True)


class LooksForTheUser(Step):
    """Reports whether it sees the user the caller created, and on which thread it ran."""

    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Event:
        try:
            seen = User.objects.filter(username=context.initial["username"]).exists()
        finally:
            if threading.current_thread() is not threading.main_thread():
                connections.close_all()  # a pool thread's own connection
        return Event("ok", updates={"seen": seen, "thread": threading.current_thread().name})


class Before(LooksForTheUser):
    pass


class Left(LooksForTheUser):
    pass


class Right(LooksForTheUser):
    pass


class After(LooksForTheUser):
    pass


class SeesTheCaller(Workflow):
    start_step = Before
    transitions = {
        Before: {"ok": [Left, Right]},
        Left: {"ok": After},
        Right: {"ok": After},
        After: {"ok": Done},
    }


@pytest.fixture
def runner() -> Iterator[LocalRunner]:
    runner = LocalRunner(max_workers=2)
    yield runner
    runner.close()


def results(runner: LocalRunner, username: str) -> dict[str, dict[str, Any]]:
    instance = runner.start(SeesTheCaller, {"username": username}, storage=DjangoStorage())
    assert instance.status == "completed"
    return {key: value for key, value in instance.context.steps.items() if value}


def test_inside_atomic_every_step_sees_the_callers_uncommitted_rows(runner: LocalRunner) -> None:
    username = f"caller-{uuid.uuid4().hex[:8]}"
    with transaction.atomic():
        User.objects.create_user(username)
        assert DjangoStorage().in_transaction()
        steps = results(runner, username)
    caller = threading.current_thread().name
    assert steps == {
        key: {"seen": True, "thread": caller} for key in ("before", "left", "right", "after")
    }


def test_outside_a_transaction_branches_run_concurrently_on_the_pool(runner: LocalRunner) -> None:
    username = f"caller-{uuid.uuid4().hex[:8]}"
    User.objects.create_user(username)  # committed: every connection sees it
    assert not DjangoStorage().in_transaction()
    steps = results(runner, username)
    assert all(step["seen"] for step in steps.values())
    assert steps["left"]["thread"].startswith("hephaestus-step")
    assert steps["right"]["thread"].startswith("hephaestus-step")
    assert steps["before"]["thread"] == threading.current_thread().name


def test_a_rolled_back_transaction_leaves_no_instance(runner: LocalRunner) -> None:
    username = f"caller-{uuid.uuid4().hex[:8]}"
    started: list[Any] = []

    def start_then_change_mind() -> None:
        with transaction.atomic():
            User.objects.create_user(username)
            started.append(
                runner.start(SeesTheCaller, {"username": username}, storage=DjangoStorage())
            )
            raise RuntimeError("the caller changes its mind")

    with pytest.raises(RuntimeError, match="changes its mind"):
        start_then_change_mind()
    (instance,) = started
    assert instance.status == "completed"
    assert DjangoStorage().query(id=instance.id) == []
    assert not User.objects.filter(username=username).exists()
