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

Binding parameters on the server instead of Django's default client-side binding was measured
too (the storage's fixed statements allow it); it saved client CPU time but no wall-clock time
on the benchmark, so Django's binding is kept.
"""

from __future__ import annotations

import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from psycopg import pq

_TIMESTAMPTZ = psycopg.postgres.types["timestamptz"].oid
_PSYCOPG_LOADER = psycopg.adapters.get_loader(_TIMESTAMPTZ, pq.Format.TEXT)


def reading_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """``connection.cursor()``, reading ``timestamptz`` with psycopg's loader where equal."""
    cursor = connection.cursor()
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
