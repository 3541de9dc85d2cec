"""Every duration option is checked by one function: the same values accepted and refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from hephaestus_django.core.durations import checked_duration, duration_problems
from hephaestus_django.runtime import InMemoryDispatcher, InMemoryStorage, LocalRunner, QueuedRunner
from hephaestus_django.runtime.worker import Worker


def _worker(**options: Any) -> Worker:
    return Worker(InMemoryStorage(), LocalRunner(), **options)


OPTIONS: list[tuple[str, Callable[[Any], object]]] = [
    ("lease", lambda value: LocalRunner(lease=value)),
    ("lease", lambda value: QueuedRunner(dispatcher=InMemoryDispatcher(), lease=value)),
    ("interval", lambda value: _worker(interval=value, max_backoff=3600)),
]


@pytest.mark.parametrize(("name", "build"), OPTIONS, ids=["local", "queued", "worker"])
@pytest.mark.parametrize("value", [True, False, "5", None, [1]])
def test_a_duration_option_refuses_what_is_not_a_duration(
    name: str, build: Callable[[Any], object], value: object
) -> None:
    with pytest.raises(TypeError, match=f"^{name} must be a timedelta or seconds, not "):
        build(value)


@pytest.mark.parametrize(("name", "build"), OPTIONS, ids=["local", "queued", "worker"])
@pytest.mark.parametrize("value", [0, -1, timedelta(0), float("nan"), float("inf")])
def test_a_duration_option_refuses_a_duration_out_of_range(
    name: str, build: Callable[[Any], object], value: object
) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be a (positive duration|finite number)"):
        build(value)


def test_seconds_and_timedeltas_mean_the_same() -> None:
    assert LocalRunner(lease=90).lease == timedelta(seconds=90)
    assert QueuedRunner(dispatcher=InMemoryDispatcher(), lease=1.5).lease == timedelta(seconds=1.5)
    assert checked_duration("horizon", 0, positive=False) == timedelta(0)
    assert duration_problems("timeout", None, seconds=False, optional=True) == []


def test_the_definition_checks_list_the_same_sentences() -> None:
    assert duration_problems("timeout", 5, seconds=False, optional=True) == [
        "timeout must be a timedelta or None, not 5"
    ]
    assert duration_problems("backoff", timedelta(-1), seconds=False, positive=False) == [
        "backoff must not be negative, not datetime.timedelta(days=-1)"
    ]
    assert duration_problems("lease", 10**18) == [
        "lease is too long a duration: 1000000000000000000 seconds"
    ]
