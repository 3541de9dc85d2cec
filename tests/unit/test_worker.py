"""The worker loop: failed passes back off and never end it; storages keep their own pace."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

import pytest

from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import InMemoryStorage
from hephaestus_django.runtime.contract import Storage
from hephaestus_django.runtime.worker import Worker


class DatabaseDown(Exception):
    """What a storage raises while its database is unreachable."""


class FlakyRunner:
    """A runner whose passes on some storages fail a number of times, then work.

    It sets ``stop`` once every storage has had ``passes`` successful passes.
    """

    def __init__(self, failing: dict[int, int], stop: threading.Event, passes: int = 3) -> None:
        self.failing = failing  # id(storage) -> failures left (-1: fails forever)
        self.succeeded: dict[int, int] = {}
        self.attempts: dict[int, int] = {}
        self.stop = stop
        self.passes = passes

    def work(
        self, *, storage: Storage, now: datetime | None = None, limit: int = 100
    ) -> list[Instance]:
        key = id(storage)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        left = self.failing.get(key, 0)
        if left:
            self.failing[key] = left - 1 if left > 0 else left
            raise DatabaseDown("connection refused\nIs the server running?")
        self.succeeded[key] = self.succeeded.get(key, 0) + 1
        healthy = [k for k, n in self.failing.items() if n >= 0]
        if all(self.succeeded.get(k, 0) >= self.passes for k in healthy):
            self.stop.set()
        return []


def run_until_stopped(worker: Worker, stop: threading.Event) -> None:
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    thread.join(timeout=60)
    stop.set()
    thread.join()


def test_failed_passes_back_off_log_one_line_each_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = InMemoryStorage()
    stop = threading.Event()
    runner: Any = FlakyRunner({id(storage): 4}, stop)
    worker = Worker({"default": storage}, runner, interval=0.01, max_backoff=0.04)
    with caplog.at_level(logging.INFO, logger="hephaestus_django.worker"):
        run_until_stopped(worker, stop)
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "worker pass on default failed: DatabaseDown: connection refused; trying again in 0.01s",
        "worker pass on default failed (2 in a row): DatabaseDown: connection refused; "
        "trying again in 0.02s",
        "worker pass on default failed (3 in a row): DatabaseDown: connection refused; "
        "trying again in 0.04s",
        "worker pass on default failed (4 in a row): DatabaseDown: connection refused; "
        "trying again in 0.04s",
    ]
    assert all(r.exc_info is None for r in failures)
    assert "worker pass on default works again, after 4 failed pass(es)" in caplog.messages
    assert runner.succeeded[id(storage)] >= 3


def test_the_delay_doubles_up_to_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    storage = InMemoryStorage()
    stop = threading.Event()
    runner: Any = FlakyRunner({id(storage): 5}, stop, passes=1)
    worker = Worker(storage, runner, interval=0.001, max_backoff=0.004)
    with caplog.at_level(logging.ERROR, logger="hephaestus_django.worker"):
        run_until_stopped(worker, stop)
    delays = [r.getMessage().rsplit(" in ", 1)[1] for r in caplog.records]
    assert delays == ["0.001s", "0.002s", "0.004s", "0.004s", "0.004s"]


def test_a_storage_that_keeps_failing_does_not_hold_up_the_others() -> None:
    down, up = InMemoryStorage(), InMemoryStorage()
    stop = threading.Event()
    runner: Any = FlakyRunner({id(down): -1, id(up): 0}, stop, passes=20)
    worker = Worker({"down": down, "up": up}, runner, interval=0.001, max_backoff=10.0)
    run_until_stopped(worker, stop)
    assert runner.succeeded[id(up)] >= 20
    # the failing storage is tried again only after its growing delay, not once per pass
    assert runner.attempts[id(down)] < runner.attempts[id(up)]


def test_run_once_gives_every_storage_its_pass_then_raises_the_failure() -> None:
    down, up = InMemoryStorage(), InMemoryStorage()
    runner: Any = FlakyRunner({id(down): -1}, threading.Event())
    worker = Worker({"down": down, "up": up}, runner)
    with pytest.raises(DatabaseDown):
        worker.run_once()
    assert runner.succeeded[id(up)] == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"interval": 0}, "interval"),
        ({"interval": 2.0, "max_backoff": 1.0}, "max_backoff"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Worker(InMemoryStorage(), Any, **options)  # type: ignore[arg-type]


def test_a_worker_needs_a_storage() -> None:
    with pytest.raises(ValueError, match="at least one storage"):
        Worker({}, Any)  # type: ignore[arg-type]
