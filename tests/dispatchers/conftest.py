"""Fixtures of the dispatcher contract suite: the adapter under test, a queued runner on it in
this process, and worker processes of its job engine on the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.dispatchers.adapters import ADAPTERS, Adapter

REPO = Path(__file__).resolve().parents[2]
LEASE = 3.0
"""Seconds: short, so that a killed worker's step is enqueued again soon."""


@pytest.fixture(params=ADAPTERS, ids=str)
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def queued(adapter: Adapter, settings: Any) -> Adapter:
    """``QueuedRunner`` on ``adapter``'s dispatcher is this process's runner."""
    settings.HEPHAESTUS = {
        "RUNNER": {
            "BACKEND": "hephaestus_django.runtime.QueuedRunner",
            "OPTIONS": {
                "dispatcher": adapter.dispatcher,
                "dispatcher_options": adapter.options,
                "lease": LEASE,
            },
        }
    }
    return adapter


class Processes:
    """Worker processes of one adapter on the test database; each logs to a file."""

    def __init__(self, adapter: Adapter, tmp_path: Path) -> None:
        self.adapter = adapter
        self.tmp_path = tmp_path
        database = {
            key: connection.settings_dict[key]
            for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
        }
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": adapter.settings_module,
            "HEPHAESTUS_TEST_DB": json.dumps(database),
            "PYTHONPATH": str(REPO),
            "LEASE": str(LEASE),
        }
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        """``manage.py`` ``argv`` in a child process, until it is killed."""
        log = self.tmp_path / f"{argv[0]}-{len(self.started)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "django", *argv],
                cwd=REPO,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.started.append((process, log))
        return process

    def worker(self) -> subprocess.Popen[bytes]:
        """One of the engine's own workers."""
        return self.spawn(*self.adapter.worker)

    def sweep(self) -> subprocess.Popen[bytes]:
        """``hephaestus_worker``: re-enqueues the work of instances whose lease lapsed."""
        return self.spawn("hephaestus_worker", "--interval", "0.2")

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for _process, log in self.started)

    def wait_until(self, done: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Poll ``done`` until it holds; fail naming ``what`` (with the workers' logs) if it
        does not within ``timeout`` seconds: a bound on a hang, not a timing assertion."""
        deadline = time.monotonic() + timeout
        while not done():
            for process, log in self.started:
                code = process.poll()
                assert code is None or code < 0, f"{log.name} exited {code}:\n{self.logs()}"
            assert time.monotonic() < deadline, f"never {what}:\n{self.logs()}"
            time.sleep(0.1)

    def kill_all(self) -> None:
        for process, _log in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def processes(queued: Adapter, tmp_path: Path) -> Iterator[Processes]:
    started = Processes(queued, tmp_path)
    yield started
    started.kill_all()
