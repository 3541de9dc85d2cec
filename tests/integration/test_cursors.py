"""The reading cursor: psycopg's timestamp loader only where it reads what Django's does; the
storage's reads through it, seen by Django and closed behind them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django.db
import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from psycopg import pq

from hephaestus_django.core import engine
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.postgres.cursors import fetch_all, fetch_one, reading_cursor
from hephaestus_django.storage import DjangoStorage
from tests import flows

pytestmark = pytest.mark.django_db

TIMESTAMPTZ = psycopg.postgres.types["timestamptz"].oid
SAMPLE = "SELECT %s::timestamptz, NULL::timestamptz"
MOMENT = dt.datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=dt.UTC)


def loader(cursor: object) -> type:
    return cursor.cursor.adapters.get_loader(TIMESTAMPTZ, pq.Format.TEXT)  # type: ignore[attr-defined, no-any-return]


def read(make_cursor: object) -> tuple[object, ...]:
    with make_cursor() as cursor:  # type: ignore[operator]
        cursor.execute(SAMPLE, [MOMENT])
        return tuple(cursor.fetchone())


def test_reads_timestamps_with_psycopgs_loader_when_django_uses_time_zones() -> None:
    with reading_cursor(connection) as cursor:
        assert loader(cursor) is psycopg.adapters.get_loader(TIMESTAMPTZ, pq.Format.TEXT)
    fast, django = read(lambda: reading_cursor(connection)), read(connection.cursor)
    assert fast == django == (MOMENT, None)
    assert fast[0].tzinfo is django[0].tzinfo is dt.UTC  # type: ignore[attr-defined]


def test_leaves_djangos_loader_when_django_wants_naive_datetimes() -> None:
    with override_settings(USE_TZ=False):
        with reading_cursor(connection) as cursor:
            assert loader(cursor) is not psycopg.adapters.get_loader(TIMESTAMPTZ, pq.Format.TEXT)
        value = read(lambda: reading_cursor(connection))[0]
        assert value == read(connection.cursor)[0]
        assert value.tzinfo is None  # type: ignore[attr-defined]


def test_storage_and_orm_read_the_same_timestamps(storage: DjangoStorage) -> None:
    instance = engine.start(engine.new_instance(flows.TwoWaits, {"script": {}}))
    storage.put(instance)
    row = WorkflowInstance.objects.get(id=instance.id)
    got = storage.get(instance.id)
    assert (got.inserted_at, got.updated_at) == (row.inserted_at, row.updated_at)
    assert got.inserted_at.tzinfo is row.inserted_at.tzinfo  # type: ignore[union-attr]
    assert (instance.inserted_at, instance.updated_at) == (row.inserted_at, row.updated_at)
    [listed] = WorkflowInstance.objects.filter(id=instance.id).to_instances()
    assert listed.updated_at == row.updated_at


class Watcher:
    """An ``execute_wrapper`` keeping each statement and the psycopg cursor it ran on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.seen.append((sql, context["cursor"].cursor))
        return execute(sql, params, many, context)


def test_fetch_one_and_fetch_all_read_through_djangos_cursor_and_close_it() -> None:
    watcher = Watcher()
    with connection.execute_wrapper(watcher), CaptureQueriesContext(connection) as captured:
        assert fetch_one(connection, "SELECT %s::int, 'a'", [1]) == (1, "a")
        assert fetch_one(connection, "SELECT 1 WHERE false", []) is None
        assert fetch_all(connection, "SELECT g FROM generate_series(1, %s) AS g", [3]) == [
            (1,),
            (2,),
            (3,),
        ]
    statements = [
        "SELECT %s::int, 'a'",
        "SELECT 1 WHERE false",
        "SELECT g FROM generate_series(1, %s) AS g",
    ]
    assert [sql for sql, _ in watcher.seen] == statements
    assert len(captured.captured_queries) == len(statements)
    assert all(inner.closed for _, inner in watcher.seen)


def test_fetch_reads_timestamps_as_the_reading_cursor_does() -> None:
    assert fetch_one(connection, SAMPLE, [MOMENT]) == read(lambda: reading_cursor(connection))
    assert fetch_all(connection, SAMPLE, [MOMENT]) == [(MOMENT, None)]


@pytest.mark.parametrize("fetch", [fetch_one, fetch_all])
def test_a_failing_statement_raises_djangos_error_and_closes_the_cursor(fetch: Any) -> None:
    watcher = Watcher()
    with connection.execute_wrapper(watcher), pytest.raises(django.db.ProgrammingError):
        fetch(connection, "SELECT no_such_column FROM workflow_instances", [])
    [(_, inner)] = watcher.seen
    assert inner.closed


@pytest.mark.parametrize("fetch", [fetch_one, fetch_all])
def test_a_row_that_cannot_be_read_raises_djangos_error_and_closes_the_cursor(fetch: Any) -> None:
    # Python's datetime has no infinity: psycopg's loader refuses the value while fetching.
    watcher = Watcher()
    with connection.execute_wrapper(watcher), pytest.raises(django.db.DataError, match="infinity"):
        fetch(connection, "SELECT 'infinity'::timestamptz", [])
    [(_, inner)] = watcher.seen
    assert inner.closed
