"""argparse ``type=`` validators shared by the management commands."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An int of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """A number greater than 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {value}")
    return value


def non_negative_seconds(text: str) -> float:
    """A number of seconds, 0 included."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {value}")
    return value


def database_of(storage: str | None, database: str | None) -> str:
    """The database alias a command reads: ``database``, or the one the storage ``storage`` uses.

    Neither given means the ``default`` storage's database. Errors are ``CommandError``s that
    say what was wrong (both given, an unknown alias, a storage with no database).
    """
    from django.core.management.base import CommandError
    from django.db import connections

    from hephaestus_django.conf import StorageNotConfigured, storages

    if storage is not None and database is not None:
        raise CommandError(
            f"Give --storage or --database, not both (--storage {storage} reads the database "
            "that storage uses; --database names a database alias directly)."
        )
    if database is not None:
        if database not in connections.settings:
            known = ", ".join(repr(alias) for alias in connections.settings)
            raise CommandError(
                f"--database {database!r} is not a database alias in settings.DATABASES "
                f"(configured: {known})."
            )
        return database
    alias = storage or "default"
    try:
        backend = storages[alias]
    except StorageNotConfigured as error:
        raise CommandError(f"--storage {alias!r}: {error}") from error
    using = getattr(backend, "using", None)
    if not isinstance(using, str):
        raise CommandError(
            f"--storage {alias!r} is a {type(backend).__name__}, which keeps no rows in a "
            "database; name a DjangoStorage, or a database alias with --database."
        )
    return using
