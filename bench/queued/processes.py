"""The worker processes of the bench: started with the bench database's settings, always stopped.

Each child runs ``python -m django <command>`` with ``DJANGO_SETTINGS_MODULE=bench.queued.settings``
and the bench database in ``$BENCH_QUEUED_DB``. :class:`Fleet` keeps every child it started
and stops them all in :meth:`Fleet.close` (called from a ``finally`` and, should that be
skipped, at exit); on Linux each child also gets ``SIGKILL`` if the bench process dies.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.environment import REPO
from bench.queued import marks

STOP_TIMEOUT_S = 10.0


def die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Fleet:
    """Starts and stops the bench's child processes; logs go to ``log_dir``."""

    def __init__(self, database: dict[str, Any], marks_file: Path, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.queued.settings",
            "BENCH_QUEUED_DB": json.dumps(database),
            marks.ENV: str(marks_file),
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        self.children: list[subprocess.Popen[bytes]] = []
        self._count = 0
        atexit.register(self.close)

    def spawn(self, *args: str, lease: float = 60.0) -> subprocess.Popen[bytes]:
        """``python -m django *args`` with the bench's settings and ``lease`` seconds."""
        self._count += 1
        log = (self.log_dir / f"{self._count:02d}-{args[0]}.log").open("ab")
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "django", *args],
                cwd=REPO,
                env={**self.env, "BENCH_QUEUED_LEASE": str(lease)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()
        self.children.append(child)
        return child

    def worker(self, *, lease: float = 60.0) -> subprocess.Popen[bytes]:
        """A procrastinate worker on the bench's queue, one job at a time."""
        return self.spawn(
            "procrastinate",
            "worker",
            "--queues",
            marks.QUEUE,
            "--concurrency",
            "1",
            lease=lease,
        )

    def sweep(self, *, lease: float, interval: float) -> subprocess.Popen[bytes]:
        """``hephaestus_worker --interval``: the sweep that re-enqueues lapsed work."""
        return self.spawn("hephaestus_worker", "--interval", str(interval), lease=lease)

    def stop(self, child: subprocess.Popen[bytes], *, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (both commands stop cleanly on it), then SIGKILL after ``timeout``."""
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self, *, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every child: SIGTERM to all at once, then SIGKILL to those still running."""
        children = list(self.children)
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            self.children.remove(child)

    def check_alive(self) -> None:
        """Raise if a child died unexpectedly, with the end of its log."""
        for child in self.children:
            if child.poll() is not None:
                raise RuntimeError(
                    f"a bench worker ({child.args!r}) exited with "
                    f"{child.returncode}; see the logs in {self.log_dir}"
                )

    def close(self) -> None:
        self.stop_all(timeout=5.0)
