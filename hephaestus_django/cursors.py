"""The cursors the storage runs its SQL with: Django's, made cheaper where nothing changes.

Both are ``connection.cursor()``, so execute wrappers, query logging (``CaptureQueriesContext``,
``DEBUG``), error translation and transactions work as for any query. Two things are changed,
and only where the result is the same:

- **Timestamps.** Django reads ``timestamptz`` columns with a loader written in Python, a
  subclass of psycopg's that attaches the connection's time zone object to each value.
  psycopg's own loader (compiled, with ``psycopg[binary]`` or ``psycopg[c]``) reads them
  several times faster and attaches the time zone of the session, which Django sets to that
  same zone when it connects. Where the two zones are the same (``USE_TZ = True``, the usual
  case), both give equal datetimes with the very same ``tzinfo``, so the cursor reads with
  psycopg's. Where they differ (``USE_TZ = False``: Django wants naive values), nothing is
  changed.
- **Binding**, for the storage's own statements only (:func:`statement_cursor`). Django binds
  parameters on the client by default, because some SQL the ORM writes cannot be sent with
  server-side parameters; the storage's few fixed statements can (they are tested that way),
  and binding them on the server costs less client time (about 25 µs a statement on the
  benchmark machine). It uses the connection's own settings: its statements are prepared only
  if the connection's ``prepare_threshold`` allows it, as Django's ``OPTIONS`` decide. While
  Django logs queries (``DEBUG``, ``CaptureQueriesContext``, the debug toolbar) the binding is
  left to Django, so the log shows each statement with its values rather than ``$1``. SQL the
  ORM compiled (``to_instances()``) goes through :func:`reading_cursor`, which always keeps
  Django's binding.
"""

from __future__ import annotations

from typing import Any

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
    if _same_timestamps(connection, inner):
        inner.adapters.register_loader(_TIMESTAMPTZ, _PSYCOPG_LOADER)
    return cursor


def statement_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """:func:`reading_cursor`, binding parameters on the server, for the storage's statements."""
    cursor = connection.cursor()
    inner = cursor.cursor
    if _same_timestamps(connection, inner):
        if isinstance(inner, psycopg.ClientCursor) and not connection.queries_logged:
            inner.close()
            inner = cursor.cursor = psycopg.Cursor(inner.connection)
        inner.adapters.register_loader(_TIMESTAMPTZ, _PSYCOPG_LOADER)
    return cursor


def _same_timestamps(connection: BaseDatabaseWrapper, inner: Any) -> bool:
    """Whether psycopg's loader reads what Django's reads on this connection's cursor."""
    zone = connection.timezone
    return (
        zone is not None
        and _PSYCOPG_LOADER is not None
        and isinstance(inner, psycopg.Cursor)
        and inner.connection.info.timezone == zone
    )
