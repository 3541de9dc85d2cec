"""Marks: when a step (or a bare task) started, in which process, appended to a file.

The bench's steps and tasks append one line ``<key> <pid> <unix time>`` to the file that
``$BENCH_QUEUED_MARKS`` names, as they start; the bench reads them back. All processes run on
one machine, so their ``time.time()`` share a clock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

QUEUE = "hephaestus-bench"
"""The procrastinate queue of every job of the bench (ours and the bare tasks')."""

ENV = "BENCH_QUEUED_MARKS"


def mark(key: str) -> None:
    """Append ``key``, this process's id and the time to the marks file (if one is set)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = f"{key} {os.getpid()} {time.time():.6f}\n"
    # One small write with O_APPEND: lines of concurrent processes do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def marked_before(key: str) -> bool:
    """Whether ``key`` was marked already (by any process)."""
    path = os.environ.get(ENV)
    if not path or not os.path.exists(path):
        return False
    prefix = f"{key} "
    with open(path) as marks:
        return any(line.startswith(prefix) for line in marks)


def read(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every mark of the file: key -> [(pid, time)] in the order written."""
    found: dict[str, list[tuple[int, float]]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            found.setdefault(parts[0], []).append((int(parts[1]), float(parts[2])))
    return found
