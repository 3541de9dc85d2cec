"""``DjangoStorage`` survives a dropped connection, outside a transaction.

The connection is dropped the way a restart of PostgreSQL leaves it (the socket closed under
Django's feet: every statement then fails with "the connection is closed"), by closing the
psycopg connection behind Django's back; the real server restarts are in ``tests/faults``.
Lost outcomes are made with an ``execute_wrapper`` (or a commit) that runs the statement and
then drops the connection before the answer is seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from hephaestus_django import LocalRunner, StaleInstanceError, Status
from hephaestus_django.core import engine
from hephaestus_django.postgres.reconnect import close_obsolete_connections
from hephaestus_django.postgres.storage import DjangoStorage, read_database_time
from tests import flows

pytestmark = pytest.mark.django_db(transaction=True)


def drop_connection() -> None:
    """Leave Django's connection as a database restart does: open in Django's eyes, dead."""
    connection.ensure_connection()
    connection.connection.close()


@contextmanager
def statements(hook: Callable[[str, Callable[[], Any]], Any]) -> Iterator[list[str]]:
    """Route every statement through ``hook(sql, run)``; yields the statements seen."""
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return hook(sql, lambda: execute(sql, params, many, context))

    with connection.execute_wrapper(wrapper):
        yield seen


def lose_answer_of(fragment: str) -> Callable[[str, Callable[[], Any]], Any]:
    """A hook that runs the first statement containing ``fragment``, then drops the connection."""
    done: list[bool] = []

    def hook(sql: str, run: Callable[[], Any]) -> Any:
        result = run()
        if fragment in sql and not done:
            done.append(True)
            connection.connection.close()
            raise OperationalError("server closed the connection unexpectedly")
        return result

    return hook


def waiting(storage: DjangoStorage) -> Any:
    """An instance waiting for two events, ``signed`` and ``paid``."""
    return LocalRunner().start(flows.TwoWaits, {}, storage=storage)


def stalled(storage: DjangoStorage) -> Any:
    """A running instance with no lease: as a runner that died leaves it."""
    instance = engine.start(engine.new_instance(flows.TwoWaits, {}))
    storage.put(instance)
    return instance


def pay(current: Any) -> Any:
    return engine.resume(current, "paid", now=datetime.now(UTC))


def test_get_query_and_delete_connect_again(storage: DjangoStorage) -> None:
    instance = waiting(storage)
    drop_connection()
    assert storage.get(instance.id).id == instance.id
    drop_connection()
    assert [found.id for found in storage.query(status="waiting")] == [instance.id]
    drop_connection()
    storage.delete(instance.id)
    assert storage.query() == []


def test_put_connects_again_and_writes_once(storage: DjangoStorage) -> None:
    instance = waiting(storage)
    before = instance.revision
    drop_connection()
    storage.put(instance)
    assert instance.revision == before + 1
    assert storage.get(instance.id).revision == before + 1


def test_claim_and_renew_connect_again(storage: DjangoStorage) -> None:
    instance = stalled(storage)
    drop_connection()
    claimed = storage.claim("worker-1", lease=timedelta(minutes=5), limit=10)
    assert [found.id for found in claimed] == [instance.id]
    drop_connection()
    assert storage.renew(instance.id, "worker-1", timedelta(minutes=10)) is True
    assert storage.get(instance.id).lease_owner == "worker-1"


def test_update_connects_again(storage: DjangoStorage) -> None:
    instance = waiting(storage)
    drop_connection()
    updated = storage.update(instance.id, pay)
    assert "paid" in [entry.event for entry in storage.get(instance.id).execution_history]
    assert updated.revision == storage.get(instance.id).revision


def test_a_put_whose_answer_was_lost_is_not_written_twice(storage: DjangoStorage) -> None:
    instance = engine.start(engine.new_instance(flows.TwoWaits, {}))
    with statements(lose_answer_of("INSERT INTO workflow_instances")) as seen:
        storage.put(instance)
    assert sum("INSERT INTO workflow_instances" in sql for sql in seen) == 1
    assert instance.revision == 1
    assert storage.get(instance.id).revision == 1


def test_a_put_lost_before_it_ran_is_made_again(storage: DjangoStorage) -> None:
    instance = waiting(storage)
    calls: list[str] = []

    def hook(sql: str, run: Callable[[], Any]) -> Any:
        if "UPDATE workflow_instances AS stored" in sql and not calls:
            calls.append(sql)
            connection.connection.close()
        return run()

    before = instance.revision
    with statements(hook) as seen:
        storage.put(instance)
    assert sum("UPDATE workflow_instances AS stored" in sql for sql in seen) == 2
    assert storage.get(instance.id).revision == instance.revision == before + 1


def test_a_lost_put_overtaken_by_another_writer_is_stale(storage: DjangoStorage) -> None:
    instance = waiting(storage)
    dsn = connection.get_connection_params()

    def hook(sql: str, run: Callable[[], Any]) -> Any:
        if "UPDATE workflow_instances AS stored" in sql:
            connection.connection.close()
            with psycopg.connect(**dsn, autocommit=True) as other:
                other.execute(
                    "UPDATE workflow_instances SET revision = revision + 1 WHERE id = %s",
                    [instance.id],
                )
        return run()

    with statements(hook), pytest.raises(StaleInstanceError):
        storage.put(pay(instance))
    stored = storage.get(instance.id)
    assert stored.revision == instance.revision + 1
    assert "paid" not in [entry.event for entry in stored.execution_history]


def test_an_update_whose_commit_was_lost_is_applied_once(
    storage: DjangoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = waiting(storage)
    real_commit = connection._commit
    lost: list[bool] = []

    def commit_then_drop() -> None:
        real_commit()
        if not lost:
            lost.append(True)
            connection.connection.close()
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connection, "_commit", commit_then_drop)
    changes: list[int] = []

    def change(current: Any) -> Any:
        changes.append(current.revision)
        return pay(current)

    updated = storage.update(instance.id, change)
    assert lost
    assert changes == [instance.revision]
    stored = storage.get(instance.id)
    assert stored.revision == updated.revision == instance.revision + 1
    assert [entry.event for entry in stored.execution_history].count("paid") == 1


def test_an_update_lost_before_its_commit_is_made_again(storage: DjangoStorage) -> None:
    instance = waiting(storage)
    with statements(lose_answer_of("FOR UPDATE")):
        updated = storage.update(instance.id, pay)
    assert storage.get(instance.id).revision == updated.revision == instance.revision + 1


def test_inside_the_callers_transaction_nothing_is_retried(
    storage: DjangoStorage, caplog: pytest.LogCaptureFixture
) -> None:
    instance = waiting(storage)

    def get_in_a_transaction() -> None:
        with transaction.atomic():
            drop_connection()
            storage.get(instance.id)

    with pytest.raises(OperationalError):
        get_in_a_transaction()
    assert "connecting again" not in caplog.text
    assert storage.get(instance.id).status is Status.WAITING


def test_an_error_on_a_live_connection_is_not_retried(storage: DjangoStorage) -> None:
    instance = waiting(storage)

    def hook(sql: str, run: Callable[[], Any]) -> Any:
        psycopg_connection = connection.connection
        psycopg_connection.execute("SET statement_timeout = '1ms'")
        try:
            with connection.wrap_database_errors:
                psycopg_connection.execute("SELECT pg_sleep(1)")
        finally:
            psycopg_connection.execute("RESET statement_timeout")

    with statements(hook) as seen, pytest.raises(OperationalError, match="statement timeout"):
        storage.get(instance.id)
    assert len(seen) == 1


def test_a_database_still_down_raises(
    storage: DjangoStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = waiting(storage)
    drop_connection()
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")  # nothing listens there
    with pytest.raises(OperationalError):
        storage.get(instance.id)
    monkeypatch.undo()
    assert storage.get(instance.id).id == instance.id  # and it works once it is back


def test_between_passes_connections_past_their_age_are_closed_but_not_a_callers(
    storage: DjangoStorage,
) -> None:
    connection.ensure_connection()
    connection.close_at = 0  # past CONN_MAX_AGE, as after a long pass
    close_obsolete_connections()
    assert connection.connection is None
    with transaction.atomic():
        connection.ensure_connection()
        connection.close_at = 0
        close_obsolete_connections()
        assert connection.connection is not None  # the caller's transaction goes on
        storage.query()


def test_reading_the_database_clock_connects_again() -> None:
    drop_connection()
    assert read_database_time("default").tzinfo is not None
