"""Database time: the one clock leases, claims and timers are measured against.

Processes on different machines disagree about the time, by seconds or, with a broken
NTP, by hours. Comparing a lease written by one process with the clock of another would
let a worker whose clock runs ahead take over steps that are still running, and a runner
whose clock is behind write timers that are due at once. So every storage has one clock:
the database's, for a SQL backend. Comparisons happen inside the storage's statements;
what a runner writes (a lease's expiry, a timer's due time, the history's timestamps) is
based on :meth:`Storage.now <hephaestus_django.runtime.contract.Storage.now>`.

:class:`DatabaseClock` gives that time without a round trip per call: it reads the
database's time once, keeps the offset from the process's clock, and reads it again after
``refresh`` seconds, or at once when the process's clock jumps (an NTP step, a suspended
VM) by more than ``tolerance`` against the monotonic clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple


def utcnow() -> datetime:
    """This process's clock, in UTC."""
    return datetime.now(UTC)


class _Reading(NamedTuple):
    offset: timedelta
    """The database's time minus this process's, when read."""
    local: datetime
    monotonic: float


class DatabaseClock:
    """The database's current time, estimated from one reading per ``refresh`` seconds.

    ``read`` returns the database's time (one statement). The reading is taken as the
    database's time at the moment just *before* the statement was sent, so the estimate is
    never behind the database, and ahead of it by at most one round trip: a timer is never
    fired before the database says it is due, and a lease never expires early.
    """

    def __init__(
        self,
        read: Callable[[], datetime],
        *,
        local: Callable[[], datetime] = utcnow,
        refresh: float = 60.0,
        tolerance: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if refresh <= 0 or tolerance <= 0:
            raise ValueError(f"refresh and tolerance must be positive, not {refresh}, {tolerance}")
        self._read = read
        self._local = local
        self._monotonic = monotonic
        self.refresh = refresh
        self.tolerance = tolerance
        self._reading: _Reading | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The database's time now (read from it when the last reading is too old)."""
        local, mono = self._local(), self._monotonic()
        reading = self._reading
        if reading is None or self._stale(reading, local, mono):
            reading = self.measure()
            local = self._local()
        return local + reading.offset

    def measure(self) -> _Reading:
        """Read the database's time now and keep the offset; returns the new reading."""
        local, mono = self._local(), self._monotonic()
        reading = _Reading(self._read() - local, local, mono)
        with self._lock:
            self._reading = reading
        return reading

    def _stale(self, reading: _Reading, local: datetime, mono: float) -> bool:
        elapsed = mono - reading.monotonic
        if elapsed >= self.refresh or elapsed < 0:
            return True
        jumped = (local - reading.local).total_seconds() - elapsed
        return abs(jumped) > self.tolerance
