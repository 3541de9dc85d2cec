"""The cursor the storage reads rows with: Django's, with faster timestamps.

Django reads ``timestamptz`` columns with a loader written in Python, a subclass of psycopg's
that attaches the database connection's time zone object to each value. psycopg's own loader
(compiled, with ``psycopg[binary]`` or ``psycopg[c]``) reads them several times faster and
attaches the time zone of the session, which Django sets to that same zone when it connects.
So where the two zones are the same (``USE_TZ = True``, the usual case) both loaders give equal
datetimes with the very same ``tzinfo``, and the cursor reads with psycopg's. A read of one
instance carries two to four timestamps, a query of a hundred rows hundreds.

Everything else stays Django's: the cursor is ``connection.cursor()``, so execute wrappers,
query logging (``CaptureQueriesContext``, ``DEBUG``), error translation and transactions work
as for any query. Where the zones differ (``USE_TZ = False``: Django wants naive values), the
cursor is left as Django made it.
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
