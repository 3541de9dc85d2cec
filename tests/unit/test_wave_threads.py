"""Where a fan-out's branches run: on the pool, unless the storage says the caller is inside a
transaction; then in the caller's thread, one after another (no database here: the storage
answers ``in_transaction()`` itself)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hephaestus_django import Done, Event, Step, Workflow
from hephaestus_django.runtime import InMemoryStorage, LocalRunner
from hephaestus_django.runtime.contract import TransactionAware, in_callers_transaction


class Fork(Step):
    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> str:
        return "ok"


class Branch(Step):
    events = ("ok",)

    def execute(self, instance: Any, config: Any, context: Any) -> Event:
        return Event("ok", updates={"thread": threading.current_thread().name})


class Left(Branch):
    pass


class Right(Branch):
    pass


class Meet(Branch):
    pass


class Forked(Workflow):
    start_step = Fork
    transitions = {
        Fork: {"ok": [Left, Right]},
        Left: {"ok": Meet},
        Right: {"ok": Meet},
        Meet: {"ok": Done},
    }


class InATransaction(InMemoryStorage):
    def __init__(self, answer: bool) -> None:
        super().__init__()
        self.answer = answer

    def in_transaction(self) -> bool:
        return self.answer


def threads_of(storage: InMemoryStorage) -> dict[str, str]:
    runner = LocalRunner(max_workers=2)
    try:
        instance = runner.start(Forked, {}, storage=storage)
    finally:
        runner.close()
    return {key: result["thread"] for key, result in instance.context.steps.items() if result}


@pytest.mark.parametrize(
    "storage", [InMemoryStorage(), InATransaction(False)], ids=["no-method", "outside"]
)
def test_branches_run_on_the_pool_outside_a_transaction(storage: InMemoryStorage) -> None:
    threads = threads_of(storage)
    assert threads["left"].startswith("hephaestus-step")
    assert threads["right"].startswith("hephaestus-step")
    assert threads["meet"] == threading.current_thread().name  # a wave of one: no pool


def test_branches_run_in_the_callers_thread_inside_a_transaction() -> None:
    threads = threads_of(InATransaction(True))
    caller = threading.current_thread().name
    assert threads == {"left": caller, "right": caller, "meet": caller}


def test_the_method_is_optional() -> None:
    assert not isinstance(InMemoryStorage(), TransactionAware)
    assert not in_callers_transaction(InMemoryStorage())
    assert in_callers_transaction(InATransaction(True))
    assert not in_callers_transaction(InATransaction(False))
