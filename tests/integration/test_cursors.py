"""The reading cursor: psycopg's timestamp loader only where it reads what Django's does."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from django.db import connection
from django.test.utils import override_settings
from psycopg import pq

from hephaestus_django.core import engine
from hephaestus_django.cursors import reading_cursor
from hephaestus_django.models import WorkflowInstance
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
