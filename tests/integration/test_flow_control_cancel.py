"""A cancelled or deleted holder's slots on ``DjangoStorage``: freed in the transaction that
ends it, taking the limits' locks before the instance's row (the order of every release, which
may wake that row: the two never wait for each other in a circle)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import psycopg
import pytest
from django.db import connection, connections

from hephaestus_django import Status
from hephaestus_django.core import engine
from hephaestus_django.core.flow import slot_request
from hephaestus_django.core.instance import Context, evolve
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.runtime import InMemoryDispatcher, LocalRunner, QueuedRunner, configure
from hephaestus_django.runtime.verbs import Runner
from hephaestus_django.storage import DjangoStorage
from tests.support.flow_control import Limited, LimitedFlow

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = timedelta(minutes=5)
REQUEST = slot_request(Limited, Context(initial={}))
assert REQUEST is not None


@pytest.fixture
def storage() -> DjangoStorage:
    return DjangoStorage()


@pytest.fixture(params=["local", "queued"])
def runner(request: pytest.FixtureRequest, storage: DjangoStorage) -> Iterator[Runner]:
    found: Runner = (
        LocalRunner(lease=LEASE)
        if request.param == "local"
        else QueuedRunner(dispatcher=InMemoryDispatcher(), lease=LEASE)
    )
    configure(storages={"default": storage}, runner=found)
    yield found
    found.close()
    configure()


def lined_up(storage: DjangoStorage, holders: int, waiters: int, parked: bool) -> list[UUID]:
    """Instances of LimitedFlow holding the limit's slots (their steps running elsewhere),
    then waiting in line (parked, as LocalRunner leaves them, when ``parked``)."""
    ids = []
    for n in range(holders + waiters):
        instance = engine.start(engine.new_instance(LimitedFlow, {}))
        if parked and n >= holders:
            instance = evolve(
                instance, lease_owner="parked:x", lease_expires_at=storage.now() + LEASE
            )
        storage.put(instance)
        storage.admit(instance.id, dotted_path(Limited), REQUEST, priority=0, lease=LEASE)
        ids.append(instance.id)
    return ids


def use() -> tuple[int, int]:
    [found] = [(u.holding, u.waiting) for u in DjangoStorage().limits() if u.name == REQUEST.name]
    return found


def test_cancel_frees_the_holders_slot_for_the_next_in_line(
    runner: Runner, storage: DjangoStorage
) -> None:
    holder, _other, waiter = lined_up(storage, holders=2, waiters=1, parked=True)
    assert use() == (2, 1)
    LimitedFlow.cancel(holder)
    assert use() == (2, 0)
    woken = LimitedFlow.get(waiter)
    assert woken.lease_expires_at is not None
    assert woken.lease_expires_at <= storage.now()
    assert storage.places(waiter) == []


def test_runner_delete_frees_the_holders_slot_for_the_next_in_line(
    runner: Runner, storage: DjangoStorage
) -> None:
    holder, _other, waiter = lined_up(storage, holders=2, waiters=1, parked=True)
    runner.delete(holder, storage=storage)
    assert use() == (2, 0)
    assert storage.places(waiter) == []


def test_a_cancel_takes_the_limits_lock_before_the_instances_row(
    runner: Runner, storage: DjangoStorage
) -> None:
    _holder, _other, waiter = lined_up(storage, holders=2, waiters=1, parked=True)
    url = psycopg.conninfo.make_conninfo(
        **{
            key: value
            for key, value in connection.get_connection_params().items()
            if key in ("dbname", "user", "password", "host", "port")
        }
    )
    with psycopg.connect(url) as release, psycopg.connect(url, autocommit=True) as look:
        # Another transaction holds the limit's lock, as a release does while it wakes rows.
        release.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))",
            [REQUEST.name, REQUEST.key],
        )
        errors: list[BaseException] = []

        def cancel() -> None:
            try:
                LimitedFlow.cancel(waiter)
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)
            finally:
                connections.close_all()

        thread = threading.Thread(target=cancel)
        thread.start()
        deadline = time.monotonic() + 30
        while not look.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "the cancel never waited for the limit's lock"
            time.sleep(0.02)
        # The cancel waits for the limit's lock without holding the row: the release could
        # wake it now.
        found = look.execute(
            "SELECT id FROM workflow_instances WHERE id = %s FOR UPDATE NOWAIT", [waiter]
        ).fetchall()
        assert found == [(waiter,)]
        release.rollback()
        thread.join(timeout=30)
    assert not errors, errors
    assert LimitedFlow.get(waiter).status is Status.CANCELLED
    assert storage.places(waiter) == []
    assert use() == (2, 0)
