"""A time limit on the statements of one admin request, enforced by PostgreSQL.

A search term within :mod:`hephaestus_django.admin.limits` still decides how much the database
does: ``channel=web`` on a million rows that all have it makes the GIN index return every row.
Its statements therefore run with ``statement_timeout`` set, so a search costs the server a
bounded time whatever the data; a statement that runs out is cancelled by PostgreSQL and the
admin says so instead of waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connections, transaction

from hephaestus_django.postgres.sql import SWAP_STATEMENT_TIMEOUT

QUERY_CANCELED = "57014"
"""SQLSTATE of a statement cancelled by ``statement_timeout``."""


@contextmanager
def statement_timeout(using: str, milliseconds: int) -> Iterator[None]:
    """Run the block in a transaction whose statements may each take ``milliseconds``.

    Inside an outer transaction (``ATOMIC_REQUESTS``) this is a savepoint, and the previous
    timeout is put back when the block succeeds (a failed block's rollback undoes it).
    """
    with transaction.atomic(using=using):
        previous = _set_timeout(using, f"{milliseconds}ms")
        yield
        _set_timeout(using, previous)


def _set_timeout(using: str, value: str) -> str:
    """Set this transaction's ``statement_timeout``; return the one it replaced."""
    with connections[using].cursor() as cursor:
        cursor.execute(SWAP_STATEMENT_TIMEOUT, [value])
        row = cursor.fetchone()
    return str(row[0])


def cancelled(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL cancelling a statement that ran out of time."""
    cause = getattr(error, "__cause__", None)
    return isinstance(error, DatabaseError) and getattr(cause, "sqlstate", None) == QUERY_CANCELED
