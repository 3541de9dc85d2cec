"""DatabaseClock: the database's time from one reading a minute, corrected when clocks jump."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hephaestus_django.runtime.clock import DatabaseClock

DB = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Machine:
    """A database clock, a process clock an hour behind it, and a monotonic clock."""

    def __init__(self) -> None:
        self.database = DB
        self.local = DB - timedelta(hours=1)
        self.monotonic = 100.0
        self.reads = 0

    def read(self) -> datetime:
        self.reads += 1
        return self.database

    def tick(self, seconds: float) -> None:
        self.database += timedelta(seconds=seconds)
        self.local += timedelta(seconds=seconds)
        self.monotonic += seconds

    def clock(self, refresh: float = 60.0) -> DatabaseClock:
        return DatabaseClock(
            self.read, local=lambda: self.local, monotonic=lambda: self.monotonic, refresh=refresh
        )


def test_the_databases_time_from_one_reading_per_refresh() -> None:
    machine = Machine()
    clock = machine.clock()
    assert clock.now() == DB
    machine.tick(30)
    assert clock.now() == DB + timedelta(seconds=30)
    assert machine.reads == 1
    machine.tick(30)
    machine.database += timedelta(seconds=5)  # the database's clock was corrected meanwhile
    assert clock.now() == DB + timedelta(seconds=65)
    assert machine.reads == 2


def test_a_jump_of_the_process_clock_is_read_again_at_once() -> None:
    machine = Machine()
    clock = machine.clock()
    clock.now()
    machine.local += timedelta(hours=3)  # an NTP step, a resumed VM
    machine.tick(1)
    assert clock.now() == DB + timedelta(seconds=1)
    assert machine.reads == 2


def test_the_estimate_is_never_behind_the_database() -> None:
    machine = Machine()

    def slow_read() -> datetime:
        machine.tick(0.2)  # the statement takes a while; the database reads its clock mid-way
        moment = machine.database
        machine.tick(0.2)
        return moment

    clock = DatabaseClock(
        slow_read, local=lambda: machine.local, monotonic=lambda: machine.monotonic
    )
    assert clock.now() >= machine.database


@pytest.mark.parametrize(("refresh", "tolerance"), [(0, 1), (60, 0), (-1, 1)])
def test_refresh_and_tolerance_must_be_positive(refresh: float, tolerance: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        DatabaseClock(lambda: DB, refresh=refresh, tolerance=tolerance)
