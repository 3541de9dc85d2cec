"""Async steps on both runners, and the ``a``-prefixed API, on the runtime's own storage."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from hephaestus_django import Status, VersionedWorkflow, Workflow
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.asynchronous import awaited
from tests.asyncflows import UNDONE, FetchQuote, Quotation
from tests.versions import Onboarding


@pytest.fixture(params=["local", "queued"])
def settle(request: pytest.FixtureRequest) -> Iterator[Callable[[], None]]:
    storage = InMemoryStorage()
    if request.param == "local":
        configure(storages={"default": storage}, runner=LocalRunner())
        yield lambda: None
    else:
        dispatcher = InMemoryDispatcher()
        runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
        configure(storages={"default": storage}, runner=runner)
        yield lambda: dispatcher.drain() and None
        runner.close()
    configure()


def test_an_async_step_and_its_async_compensation_run_on_both_runners(
    settle: Callable[[], None],
) -> None:
    instance_id = Quotation.start({"amount": 21})
    settle()
    waiting = Quotation.get(instance_id)
    assert waiting.status is Status.WAITING
    assert waiting.context.result(FetchQuote) == {"price": 42}

    Quotation.cancel(instance_id, compensate=True)
    settle()
    assert Quotation.get(instance_id).status is Status.CANCELLED
    assert str(instance_id) in UNDONE


def test_the_async_api_from_a_coroutine(settle: Callable[[], None]) -> None:
    async def caller() -> Status:
        instance_id = await Quotation.astart({"amount": 1}, key="q-1")
        assert await Quotation.astart({"amount": 1}, key="q-1") == instance_id
        await asyncio.to_thread(settle)
        await Quotation.aresume(key="q-1", event="accepted")
        await asyncio.to_thread(settle)
        [listed] = await Quotation.alist(key="q-1")
        assert listed.id == instance_id
        second = await Quotation.astart({"amount": 2})
        await asyncio.to_thread(settle)
        assert (await Quotation.acancel(second, "no")).status is Status.CANCELLED
        return (await Quotation.aget(key="q-1")).status

    assert asyncio.run(caller()) is Status.COMPLETED


def test_a_coroutine_is_awaited_even_from_a_thread_whose_loop_runs() -> None:
    async def answer() -> str:
        return "quoted"

    async def inside_a_loop() -> str:
        return awaited(answer())  # a runner called straight from a coroutine

    assert awaited(answer()) == "quoted"
    assert awaited("plain") == "plain"
    assert asyncio.run(inside_a_loop()) == "quoted"


def _public_classes_with_twins() -> list[type]:
    """Every public class of the package that has an ``a``-prefixed twin of a verb."""
    import hephaestus_django

    found = []
    for name in hephaestus_django.__all__:
        value = getattr(hephaestus_django, name, None) if name != "storages" else None
        if isinstance(value, type) and any(_twins(value)):
            found.append(value)
    return found


def _twins(cls: type) -> list[str]:
    return [
        name
        for name in dir(cls)
        if name.startswith("a") and not name.startswith("_") and hasattr(cls, name[1:])
        if inspect.iscoroutinefunction(getattr(cls, name))
    ]


def test_the_public_classes_with_twins_include_both_workflow_facades() -> None:
    assert {Workflow, VersionedWorkflow} <= set(_public_classes_with_twins())


@pytest.mark.parametrize("cls", _public_classes_with_twins(), ids=lambda cls: cls.__name__)
def test_every_verb_has_an_async_twin_with_its_signature(cls: type) -> None:
    verbs = {"start", "resume", "retry", "cancel", "get", "list"}
    if issubclass(cls, VersionedWorkflow):
        verbs.add("upgrade")
    assert verbs <= {name[1:] for name in _twins(cls)}
    for twin in _twins(cls):
        verb = twin[1:]
        assert inspect.signature(getattr(cls, twin)) == inspect.signature(getattr(cls, verb)), (
            f"{cls.__name__}.{twin} does not take the arguments of {cls.__name__}.{verb}"
        )


def test_astart_takes_a_version(settle: Callable[[], None]) -> None:
    async def caller() -> int:
        instance_id = await Onboarding.astart({"user_id": 1}, version=1)
        await asyncio.to_thread(settle)
        return (await Onboarding.aget(instance_id)).workflow_version

    assert asyncio.run(caller()) == 1
