"""Recovering from a dropped database connection, for processes that live outside requests.

Django drops a broken connection only at request boundaries (``close_if_unusable_or_obsolete``,
``CONN_HEALTH_CHECKS``). A worker loop, the lease heartbeat and a runner driven from a script
never reach one: once PostgreSQL restarts (a failover, a minor upgrade), every statement on the
old connection fails with "the connection is closed", forever. So :class:`DjangoStorage` asks
:func:`dropped` after a failed statement, and if the connection was lost, and nothing but it
was lost, runs the statement again on a new one:

- only outside a transaction: inside the caller's ``transaction.atomic()`` the transaction went
  down with the connection, and only the caller knows how to redo it;
- only for a lost connection: an error on a connection that still answers (a statement timeout,
  a cancelled query) is the statement's own, and is raised as it is;
- only once: if the database is still down, the new connection fails too and that error is
  raised; the caller (the worker loop, the heartbeat) tries again later.

Reads, claims, renewals and deletes are run again as they are. A write whose outcome is unknown
is never simply repeated: the storage reads the row first to see whether the write landed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("hephaestus_django.storage")

T = TypeVar("T")


def dropped(using: str, error: BaseException) -> bool:
    """Whether ``error`` lost the connection of ``using``, and nothing but it.

    If so, the broken connection is closed, so that the next statement connects again. (After
    a transaction, Django may already have connected again by itself.)
    """
    if not isinstance(error, (OperationalError, InterfaceError)) or not _lost_connection(error):
        return False
    connection = connections[using]
    if connection.in_atomic_block:
        return False
    if connection.connection is not None and not connection.is_usable():
        connection.close()
    logger.warning(
        "lost the connection to database %r (%s); connecting again", using, _first_line(error)
    )
    return True


def again(using: str, error: DatabaseError, statement: Callable[[BaseDatabaseWrapper], T]) -> T:
    """Run an idempotent ``statement`` on a new connection if ``error`` only lost the old one.

    Re-raises ``error`` otherwise.
    """
    if not dropped(using, error):
        raise error
    return statement(connections[using])


# SQLSTATEs of a connection that is gone: connection exceptions (class 08), and the server
# shutting down (57P01 admin, 57P02 crash) or not accepting connections yet (57P03).
_GONE = ("08", "57P01", "57P02", "57P03")


def close_obsolete_connections() -> None:
    """Close this thread's connections that are past ``CONN_MAX_AGE`` or failed, between passes.

    What Django does between two requests (``close_old_connections``), for a worker loop that
    never sees one; connections inside a transaction (a caller's ``atomic()``) are left alone.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _lost_connection(error: BaseException) -> bool:
    """Whether the driver's error says the connection is gone, not that a statement failed.

    Errors of the client library itself ("the connection is closed", "server closed the
    connection unexpectedly") carry no SQLSTATE; a statement timeout or a cancel carries its own.
    """
    state = getattr(error.__cause__, "sqlstate", None)
    return state is None or state.startswith(_GONE)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
