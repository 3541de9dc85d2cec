"""The cursor the storage reads rows with: Django's, reading timestamps faster.

It is ``connection.cursor()``, so execute wrappers, query logging (``CaptureQueriesContext``,
``DEBUG``), error translation and transactions work as for any query. One thing is changed,
and only where the result is the same: Django reads ``timestamptz`` columns with a loader
written in Python, a subclass of psycopg's that attaches the connection's time zone object to
each value. psycopg's own loader (compiled, with ``psycopg[binary]`` or ``psycopg[c]``) reads
them several times faster and attaches the time zone of the session, which Django sets to that
same zone when it connects. Where the two zones are the same (``USE_TZ = True``, the usual
case), both give equal datetimes with the very same ``tzinfo``, so the cursor reads with
psycopg's. Where they differ (``USE_TZ = False``: Django wants naive values), the cursor is left
as Django made it. A read of one instance carries two to four timestamps, a query of a hundred
rows hundreds.

:func:`fetch_one` and :func:`fetch_all` are how the storage reads: the statement goes through
the wrapper's ``execute``, which is where Django and the tools built on it (query logging and
counting, ``execute_wrapper``, debug-toolbar, APM agents) see it. The rows are then taken from
psycopg's cursor itself, inside the connection's error translation. Through the wrapper,
``fetchone`` and ``close`` are each looked up by ``__getattr__``, and ``fetchone`` is wrapped in a
new error-translating function on every call: about 1.5 µs per read, twice that in a loop that
waits for the database in between.

Binding parameters on the server instead of Django's default client-side binding was measured
too (the storage's fixed statements allow it); it saved client CPU time but no wall-clock time
on the benchmark, so Django's binding is kept.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.exceptions import SynchronousOnlyOperation
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from psycopg import pq

_TIMESTAMPTZ = psycopg.postgres.types["timestamptz"].oid
_PSYCOPG_LOADER = psycopg.adapters.get_loader(_TIMESTAMPTZ, pq.Format.TEXT)


ASYNC_HINT = (
    "hephaestus-django: in async code (an async view, a coroutine) await the a-prefixed "
    "verbs instead: `await Workflow.astart(...)`, `aresume`, `aget`, `alist`, `acancel`, "
    "`aretry`; they run the synchronous ones in a worker thread."
)
"""Added to Django's ``SynchronousOnlyOperation`` message when the storage is called from
an event loop's thread."""


def reading_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """``connection.cursor()``, reading ``timestamptz`` with psycopg's loader where equal.

    Called in an event loop's thread (an async view calling ``Workflow.start()``), Django
    refuses with ``SynchronousOnlyOperation``; the message then says which verbs to call
    instead."""
    try:
        cursor = connection.cursor()
    except SynchronousOnlyOperation as error:
        raise SynchronousOnlyOperation(f"{error} {ASYNC_HINT}") from error
    inner = cursor.cursor
    zone = connection.timezone
    if (
        zone is not None
        and _PSYCOPG_LOADER is not None
        and isinstance(inner, psycopg.Cursor)
        and inner.connection.info.timezone == zone
    ):
        inner.adapters.register_loader(_TIMESTAMPTZ, _PSYCOPG_LOADER)
    return cursor


def fetch_one(connection: BaseDatabaseWrapper, sql: str, params: Any) -> tuple[Any, ...] | None:
    """Execute ``sql`` on a :func:`reading_cursor` and return its first row, if any."""
    inner = _executed(connection, sql, params)
    try:
        with connection.wrap_database_errors:
            row: tuple[Any, ...] | None = inner.fetchone()
            return row
    finally:
        inner.close()


def fetch_all(connection: BaseDatabaseWrapper, sql: str, params: Any) -> list[tuple[Any, ...]]:
    """Execute ``sql`` on a :func:`reading_cursor` and return its rows."""
    inner = _executed(connection, sql, params)
    try:
        with connection.wrap_database_errors:
            rows: list[tuple[Any, ...]] = inner.fetchall()
            return rows
    finally:
        inner.close()


def fetch_last(
    connection: BaseDatabaseWrapper, sql: str, params: Any
) -> list[tuple[Any, ...]] | None:
    """Execute ``sql``, several statements sent at once, and return the rows of the last one;
    None (nothing executed) where the connection binds parameters on the server, which takes
    one statement at a time.

    The statements of one query string run in one transaction (the caller's, else one of their
    own), each with its own snapshot: a lock taken by the first is held by the next ones, which
    see every write committed before it was granted."""
    cursor = reading_cursor(connection)
    try:
        if not isinstance(cursor.cursor, psycopg.ClientCursor):
            return None
        cursor.execute(sql, params)
        inner = cursor.cursor
        with connection.wrap_database_errors:
            while inner.nextset():
                pass
            rows: list[tuple[Any, ...]] = inner.fetchall()
            return rows
    finally:
        cursor.close()


def _executed(connection: BaseDatabaseWrapper, sql: str, params: Any) -> psycopg.Cursor[Any]:
    """psycopg's cursor, after ``sql`` went through Django's ``execute``."""
    cursor = reading_cursor(connection)
    try:
        cursor.execute(sql, params)
    except BaseException:
        cursor.close()
        raise
    return cursor.cursor
